"""optuna-dashboard, pointed at tailtune's PostgreSQL, shows a tailtune study with its per-split accuracies."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from wsgiref.simple_server import WSGIRequestHandler, make_server

import httpx
import pytest

from studies.definition.spec import parse_spec
from studies.run.worker import WorkerSettings, run_worker
from studies.store import registry
from studies.store.db import Database

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def finished_study(postgres_url: str, tmp_path: Path) -> Iterator[Database]:
    db = Database.connect(postgres_url)
    spec = parse_spec({"name": "dash-wb", "dataset": "digits-lt", "method": "wb", "n_trials": 2, "confirm": None,
                       "fixed": {"stage1.epochs": 2}})
    registry.create_study(db, spec=spec)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False)
    run_worker(db, study_names=["dash-wb"], settings=settings, artifact_dir=tmp_path)
    yield db
    db.dispose()


def test_dashboard_api_shows_the_study_and_per_split_user_attrs(finished_study: Database) -> None:
    import optuna_dashboard  # here, not at collection: 1-2 s that every test process would pay

    app = optuna_dashboard.wsgi(finished_study.optuna_storage())
    server = make_server("127.0.0.1", 0, app, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_port}"
        studies = httpx.get(f"{base}/api/studies", timeout=30).json()["study_summaries"]
        [summary] = [s for s in studies if s["study_name"] == "dash-wb"]
        detail = httpx.get(f"{base}/api/studies/{summary['study_id']}", timeout=30).json()
    finally:
        server.shutdown()
    complete = [t for t in detail["trials"] if t["state"] == "Complete"]
    assert len(complete) == 2
    for trial in complete:
        attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
        for split in ("all", "many", "medium", "few"):
            assert float(attrs[f"val_{split}"]) >= 0 and float(attrs[f"test_{split}"]) >= 0
        assert float(attrs["val_all"]) == pytest.approx(trial["values"][0])
    assert {"stage1.weight_decay", "stage2.weight_decay"} <= {p["name"] for p in detail["intersection_search_space"]}
