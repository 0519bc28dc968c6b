"""A comparison end to end on digits-lt and PostgreSQL at test size: `tailtune compare create`, workers that serve
every study, `compare show` (JSON, table, artifacts), the same through POST/GET /comparisons."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from studies.definition.comparison import ComparisonSpec
from studies.run.worker import WorkerSettings, run_worker
from studies.store import comparisons, registry
from studies.store.db import Database
from tailtune.cli import app

runner = CliRunner()
TINY = ["--fix", "stage1.epochs=3", "--fix", "stage1.lr=0.01", "--fix", "stage2.epochs=2"]
SPLITS = {"all", "many", "medium", "few"}


def _run_workers(db: Database, artifacts: Path) -> None:
    settings = WorkerSettings(device="cpu", handle_signals=False, poll_interval_s=0.1)
    run_worker(db, study_names=None, settings=settings, artifact_dir=artifacts)


@pytest.mark.postgres
@pytest.mark.slow
def test_a_comparison_ends_with_every_method_confirmed_over_seeds(postgres_url: str, tmp_path: Path,
                                                                  app_client: Callable[[str], TestClient]) -> None:
    created = runner.invoke(app, ["compare", "create", "acc", "--dataset", "digits-lt", "--n-trials", "2",
                                  "--seeds", "2", "--top-k", "1", *TINY, "--storage", postgres_url])
    assert created.exit_code == 0, created.output
    assert "stage 1 searched once for wb, tau-norm, los: 2 trials" in created.output
    assert "stage 1 searched once for ewb: 2 trials" in created.output
    db = Database.connect(postgres_url)
    try:
        record = comparisons.get_comparison_by_name(db, name="acc")
        assert record.state == "searching stage 1" and record.methods["wb"].state == "waiting"
        _run_workers(db, tmp_path / "artifacts")
        wb = registry.get_study_by_name(db, name="acc-wb")
        stage1 = registry.get_study_by_name(db, name="acc-stage1")
    finally:
        db.dispose()
    # The stage-1 study searched the stage-1 weight decay (lr and epochs are fixed here); the two-stage studies
    # fixed its best and searched stage 2 only.
    assert stage1.counts.complete == 2 and wb.spec.fixed["stage1.weight_decay"] == stage1.best_params[
        "stage1.weight_decay"]
    assert not any(name.startswith("stage1.") for name in wb.spec.resolved_space())

    shown = runner.invoke(app, ["compare", "show", "acc", "--storage", postgres_url, "--json",
                                "--out", str(tmp_path / "table")])
    assert shown.exit_code == 0, shown.output
    result = json.loads(shown.stdout)
    assert result["state"] == "done" and isinstance(result["stage1_trainings"], int)
    assert set(result["methods"]) == {"wb", "tau-norm", "los", "ewb"}
    for method, row in result["methods"].items():
        assert row["study"] == f"acc-{method}" and row["params"]
        for part in ("val", "test"):
            assert set(row[part]) == SPLITS
            assert all(row[part][s]["n"] == 2 and set(row[part][s]) == {"mean", "std", "n", "ci95"}
                       for s in SPLITS if row[part][s] is not None)
    assert any(row["test"]["all"]["std"] > 0 for row in result["methods"].values())
    assert {path.name for path in (tmp_path / "table").iterdir()} == {"comparison.md", "comparison.tex",
                                                                      "comparison.csv", "comparison.png"}
    assert [(search["study"], search["methods"]) for search in result["stage1"]] == [
        ("acc-stage1", ["wb", "tau-norm", "los"]), ("acc-ewb-stage1", ["ewb"])]
    assert result["methods"]["ewb"]["params"]["stage1.feature_reg"] == result["stage1"][1]["params"][
        "stage1.feature_reg"]
    # Shared stage 1: a method's search trained no backbone its stage-1 study had not.
    for method in ("wb", "los", "ewb"):
        trained = [t for t in _trials(postgres_url, f"acc-{method}") if t.user_attrs["stage1_trained"]]
        assert trained == [], method

    table = runner.invoke(app, ["compare", "show", "acc", "--storage", postgres_url])
    assert table.exit_code == 0 and "| wb (recipe) |" in table.stdout and "**" in table.stdout

    best = runner.invoke(app, ["study", "best", "acc-wb", "--storage", postgres_url, "--json"])
    confirmed = json.loads(best.stdout)["confirmed"]
    assert set(confirmed["best_minus_recipe"]) >= {"mean", "ci95"} and isinstance(confirmed["verdict"], str)

    client = app_client(postgres_url)
    posted = client.post("/comparisons", json=ComparisonSpec(name="acc2", n_trials=1, methods=["ewb"],
                                                             seeds=2, top_k=1).model_dump(mode="json"))
    assert posted.status_code == 201, posted.text
    by_id = client.get(f"/comparisons/{result['id']}").json()
    assert by_id["methods"] == result["methods"] and by_id["stage1_trainings"] == result["stage1_trainings"]
    assert client.post("/comparisons", json={"name": "acc", "n_trials": 1}).status_code == 409
    assert client.get("/comparisons/999").status_code == 404


def _trials(url: str, name: str) -> list:
    import optuna

    return optuna.load_study(study_name=name, storage=url).trials
