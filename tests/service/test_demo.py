"""`tailtune demo`, the README's first command, in this process (.ci/run runs it as a process)."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from tailtune.cli import app


@pytest.mark.slow
@pytest.mark.usefixtures("optuna_verbosity")
def test_demo_runs_a_real_study_over_http_and_prints_a_leaderboard(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    completed = CliRunner().invoke(app, ["demo", "--quick"])
    assert completed.exit_code == 0, completed.output
    out = completed.stdout
    assert "top trials by val All" in out
    assert "optuna-dashboard sqlite:///tailtune-demo.db" in out
    assert (tmp_path / "tailtune-demo.db").exists()
    rows = [line for line in out.splitlines() if "λ1=" in line]
    assert len(rows) == 4  # every trial of the quick study finished and is listed
