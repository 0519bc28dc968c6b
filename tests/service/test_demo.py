"""`tailtune demo`, the README's first command, as a user runs it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.slow
def test_demo_runs_a_real_study_over_http_and_prints_a_leaderboard(tmp_path: Path) -> None:
    completed = subprocess.run([sys.executable, "-m", "tailtune", "demo", "--quick"], cwd=tmp_path,
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    out = completed.stdout
    assert "top trials by val All" in out
    assert "optuna-dashboard sqlite:///tailtune-demo.db" in out
    assert (tmp_path / "tailtune-demo.db").exists()
    rows = [line for line in out.splitlines() if "λ1=" in line]
    assert len(rows) == 4  # every trial of the quick study finished and is listed
