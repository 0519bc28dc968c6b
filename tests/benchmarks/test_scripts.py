"""Every benchmark script runs as `python benchmarks/<name>.py` from any directory, and ends with its metric line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = {"trainer_throughput": "speedup_vs_reference", "stage2_cost": "stage2_over_stage1",
           "batched_heads": "batched_speedup", "study_speedup": "study_speedup_vs_naive",
           "search_efficiency": "bayes_over_grid_trials", "service_overhead": "overhead_ratio",
           "claim_throughput": "claims_per_s_16", "loss_gradient_ratio": "grad_ratio_cb_over_cb_bce",
           "image_pipeline": "decode_speedup_vs_reference", "stage1_speed": "stage1_images_per_s",
           "new_data": "min_margin_over_baseline", "default_space_cost": "default_space_cost_ratio",
           "wb_default_loss": "best_default_by_val_all", "feature_precision": "max_abs_fp16_minus_fp32_points",
           "comparison_cost": "comparison_cost_vs_separate"}


def _run(script: str, *args: str, cwd: Path) -> str:
    completed = subprocess.run([sys.executable, str(BENCHMARKS / f"{script}.py"), *args], cwd=cwd,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return completed.stdout


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_imports_and_documents_its_metric(script: str, tmp_path: Path) -> None:
    help_text = _run(script, "--help", cwd=tmp_path)
    assert help_text.startswith("usage:")
    assert SCRIPTS[script] in (BENCHMARKS / f"{script}.py").read_text()


@pytest.mark.slow
def test_batched_heads_at_a_tiny_size_prints_its_table_and_metric(tmp_path: Path) -> None:
    output = _run("batched_heads", "--configs", "3", "--samples", "300", "--classes", "5", "--dim", "8",
                  "--epochs", "2", "--repeats", "1", "--threads", "1", cwd=tmp_path)
    lines = output.strip().splitlines()
    assert re.fullmatch(r"batched_speedup: \d+\.\d\d", lines[-1])
    assert any(line.startswith("digits-lt-like") for line in lines)


@pytest.mark.slow
def test_new_data_at_a_tiny_size_runs_the_panel_and_prints_the_margin(tmp_path: Path) -> None:
    lines = _run("new_data", "--tiny", "--threads", "1", cwd=tmp_path).strip().splitlines()
    assert re.fullmatch(r"min_margin_over_baseline: -?\d+\.\d\d", lines[-1])
    assert [line.split()[0] for line in lines if line.split()[0] in ("digits16", "glyphs", "textures")] == [
        "digits16", "glyphs", "textures"]


@pytest.mark.slow
def test_wb_default_loss_at_a_tiny_size_compares_the_three_variants_on_both_data_sets(tmp_path: Path) -> None:
    output = _run("wb_default_loss", "--seeds", "1", "--stage1-epochs", "1", "--threads", "1", cwd=tmp_path)
    lines = output.strip().splitlines()
    assert re.fullmatch(r"best_default_by_val_all: (cb 0\.1|cb-bce 0\.1|cb r\*0\.1)", lines[-1])
    assert any(line.startswith("folder (gratings") for line in lines)
    assert sum(line.startswith(("cb 0.1", "cb-bce 0.1", "cb r*0.1")) for line in lines) == 6


@pytest.mark.slow
def test_feature_precision_at_a_tiny_size_compares_both_banks_of_one_backbone(tmp_path: Path) -> None:
    output = _run("feature_precision", "--seeds", "1", "--stage1-epochs", "1", "--threads", "1", cwd=tmp_path)
    lines = output.strip().splitlines()
    assert re.fullmatch(r"max_abs_fp16_minus_fp32_points: \d+\.\d\d", lines[-1])
    assert "(ratio 2.00)" in lines[-2]  # float32 features take twice the bytes
