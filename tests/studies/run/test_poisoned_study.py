"""A study a worker cannot load never stops the worker (issue 21 item 5): it is stopped with its reason as
stop_reason, and the worker goes on with its other studies."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa

from studies.definition.spec import parse_spec
from studies.run.worker import WorkerSettings, one_at_a_time, run_worker
from studies.store import registry
from studies.store.db import Database
from studies.store.tables import study_table
from tests.trainers.fake_data import write_fake_image_folder
from tests.trial_runners import instant_runner


def poison(db: Database, study_id: int) -> None:
    """A spec written before seeds were bounded (or by hand): 2**32 stopped every worker that loaded it."""
    with db.engine.begin() as connection:
        spec = json.loads(connection.execute(sa.select(study_table.c.spec_json)
                                             .where(study_table.c.id == study_id)).scalar_one())
        connection.execute(study_table.update().where(study_table.c.id == study_id)
                           .values(spec_json=json.dumps(spec | {"seed": 2**32})))


def test_a_worker_serving_a_poisoned_and_a_good_study_finishes_the_good_one(database: Database,
                                                                           tmp_path: Path) -> None:
    poisoned = registry.create_study(database, spec=parse_spec({"name": "poisoned", "n_trials": 2,
                                                                                 "confirm": None}))
    good = registry.create_study(database, spec=parse_spec({"name": "good", "n_trials": 3, "confirm": None}))
    poison(database, poisoned.id)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False)
    summary = run_worker(database, study_names=["poisoned", "good"], settings=settings, artifact_dir=tmp_path,
                         runner=one_at_a_time(instant_runner))
    assert summary.completed == 3
    assert registry.get_study(database, study_id=good.id).state == "done"
    [stopped] = registry.list_studies(database, name="poisoned").items
    assert stopped.state == "stopped" and stopped.counts.complete == 0
    assert "cannot load" in stopped.stop_reason and "seed" in stopped.stop_reason


def test_a_worker_with_data_roots_completes_no_trial_on_a_class_folder_swapped_for_a_symlink_out(
        sqlite_url: str, tmp_path: Path) -> None:
    root = tmp_path / "root"
    folder = write_fake_image_folder(root / "images", {"ant": 12, "bee": 8}, {"ant": 3, "bee": 3})
    db = Database.connect(sqlite_url)
    spec = parse_spec({"name": "swapped", "n_trials": 2, "dataset": f"folder:{folder}", "image_size": 8,
                       "fixed": {"stage1.epochs": 1}})
    registry.create_study(db, spec=spec)  # inside the root when created (the API would have allowed it)
    outside = tmp_path / "outside" / "secret-class"
    outside.parent.mkdir()
    (folder / "train" / "bee").rename(outside)
    (folder / "train" / "bee").symlink_to(outside)  # swapped afterwards
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False,
                              max_consecutive_failures=2)
    summary = run_worker(db, study_names=["swapped"], settings=settings, artifact_dir=tmp_path / "artifacts",
                         data_roots=[root])
    [study] = registry.list_studies(db, name="swapped").items
    db.dispose()
    assert summary.completed == 0 and study.counts.complete == 0 and study.state == "stopped"
    assert str(folder / "train" / "bee") in study.stop_reason and "secret-class" not in study.stop_reason
