"""Every benchmark script runs to its metric line at a tiny size (`--tiny`), in this process: a change that breaks
one fails here. One script also runs as `python benchmarks/<name>.py` from another directory, the documented way."""

from __future__ import annotations

import importlib
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
# script -> its metric line's name, a regular expression (claim_throughput names the last worker count)
SCRIPTS = {"trainer_throughput": "speedup_vs_reference", "stage2_cost": "stage2_over_stage1",
           "batched_heads": "batched_speedup", "study_speedup": "study_speedup_vs_naive",
           "search_efficiency": "bayes_over_grid_trials", "service_overhead": "overhead_ratio",
           "claim_throughput": r"claims_per_s_\d+", "loss_gradient_ratio": "grad_ratio_cb_over_cb_bce",
           "image_pipeline": "decode_speedup_vs_reference", "stage1_speed": "stage1_images_per_s",
           "new_data": "min_margin_over_baseline", "default_space_cost": "default_space_cost_ratio",
           "wb_default_loss": "best_default_by_val_all", "feature_precision": "max_abs_fp16_minus_fp32_points",
           "comparison_cost": "comparison_cost_vs_separate", "folder_defaults": "best_folder_default_by_val_all"}
# Scripts that measure nothing themselves: panel.py writes the data sets new_data.py studies.
HELPERS = {"panel"}
# Marks beyond "slow": what a script starts besides itself.
MARKS = {"service_overhead": [pytest.mark.postgres],
         "claim_throughput": [pytest.mark.postgres, pytest.mark.multiprocess]}
NUMBER = r"-?\d+(\.\d+)?"
# The metric names the best default.
VALUES = {"wb_default_loss": r"(cb 0\.1|cb-bce 0\.1|cb r\*0\.1)", "folder_defaults": r"(generic|lr-0\.1)"}
# What a script's tiny run must print besides its metric line.
CHECKS = {
    "batched_heads": lambda lines: any(line.startswith("digits-lt-like") for line in lines),
    "new_data": lambda lines: [line.split()[0] for line in lines if line.startswith(("digits16 ", "glyphs ",
                                                                                     "textures "))]
    == ["digits16", "glyphs", "textures"],
    "wb_default_loss": lambda lines: sum(line.startswith(("cb 0.1", "cb-bce 0.1", "cb r*0.1")) for line in lines) == 6,
    "feature_precision": lambda lines: "(ratio 2.00)" in lines[-2],  # float32 features take twice the bytes
}


def test_every_script_is_listed() -> None:
    assert {path.stem for path in BENCHMARKS.glob("[!_]*.py")} == set(SCRIPTS) | HELPERS


@pytest.mark.slow
@pytest.mark.usefixtures("optuna_verbosity")
@pytest.mark.parametrize("script", [pytest.param(name, marks=MARKS.get(name, [])) for name in SCRIPTS])
def test_script_runs_to_its_metric_line_at_a_tiny_size(script: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    importlib.import_module(f"benchmarks.{script}").main(["--tiny"])
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(rf"{SCRIPTS[script]}: {VALUES.get(script, NUMBER)}", lines[-1]), lines[-5:]
    assert CHECKS.get(script, lambda _lines: True)(lines), lines


def test_a_script_runs_from_another_directory(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, str(BENCHMARKS / "loss_gradient_ratio.py"), "--tiny"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert completed.stdout.strip().splitlines()[-1].startswith("grad_ratio_cb_over_cb_bce: ")
