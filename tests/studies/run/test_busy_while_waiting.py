"""A worker whose trial waits for a backbone that another worker trains runs other studies' trials meanwhile:
no worker idles while a study it serves has a claimable trial (a comparison's method studies share backbones)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from studies.artifacts.cache import stage1_key
from studies.definition.spec import parse_spec
from studies.run.worker import WorkerSettings, WorkerSummary, run_worker
from studies.store import registry
from studies.store.db import Database

STAGE1 = {"stage1.lr": 0.01, "stage1.weight_decay": 5e-3, "stage1.epochs": 1}


def _finished(db: Database, name: str) -> list[str]:
    study_id = registry.get_study_by_name(db, name=name).id
    return [t.state for t in registry.list_trials(db, study_id=study_id, limit=100).items
            if t.state in ("complete", "pruned")]


def test_a_worker_waiting_for_a_backbone_runs_another_studys_trials_meanwhile(storage_url: str,
                                                                              tmp_path: Path) -> None:
    db, elsewhere = Database.connect(storage_url), Database.connect(storage_url)  # the other worker's pool
    # The first study's one trial (its recipe) needs the backbone another worker is training; the second's
    # trials need another one (a second stage-1 epoch).
    waits = registry.create_study(db, spec=parse_spec({"name": "waits", "n_trials": 1, "sampler": "random",
                                                       "confirm": None, "fixed": STAGE1}))
    registry.create_study(db, spec=parse_spec({"name": "other", "n_trials": 2, "sampler": "random",
                                               "confirm": None, "fixed": STAGE1 | {"stage1.epochs": 2}}))
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, poll_interval_s=0.1, device="cpu",
                              handle_signals=False)
    summaries: list[WorkerSummary] = []
    worker = threading.Thread(target=lambda: summaries.append(
        run_worker(db, study_names=None, settings=settings, artifact_dir=tmp_path)))
    with elsewhere.named_lock(f"stage1:{stage1_key(waits.spec.base_config())}"):  # being trained elsewhere
        worker.start()
        deadline = time.monotonic() + 60
        while len(_finished(db, "other")) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_finished(db, "other")) == 2, "the worker idled while the other study had trials to run"
        assert _finished(db, "waits") == []
    worker.join(timeout=120)
    assert _finished(db, "waits") == ["complete"] and summaries[0].completed == 3
    db.dispose()
    elsewhere.dispose()
