"""The stage-1 cache: one training per key, shared by trials and by racing worker processes."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

import optuna
import pytest

from studies import registry
from studies.cache import Stage1Cache, stage1_key
from studies.db import Database
from studies.spec import parse_spec
from studies.worker import WorkerSettings, run_worker
from trainers.config import RunOptions, with_fields
from trainers.device import resolve_runtime
from trainers.errors import TrainingDivergedError
from trainers.presets import method_defaults

CPU = resolve_runtime(RunOptions(device="cpu"))
TINY = with_fields(method_defaults("wb"), {"stage1.epochs": 2})


def test_a_wb_study_with_lambda1_fixed_trains_stage1_once(storage_url: str, tmp_path: Path) -> None:
    db = Database.connect(storage_url)
    spec = parse_spec({"name": "cached", "method": "wb", "n_trials": 10,
                       "fixed": {"stage1.epochs": 2, "stage1.weight_decay": 5e-3}})
    registry.create_study(db, spec=spec)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, artifact_dir=tmp_path, device="cpu",
                              handle_signals=False)
    run_worker(db, study_names=["cached"], settings=settings)
    trials = optuna.load_study(study_name="cached", storage=storage_url).trials
    assert [t.state for t in trials].count(optuna.trial.TrialState.COMPLETE) == 10
    assert sum(t.user_attrs["stage1_trained"] for t in trials) == 1
    assert len({t.user_attrs["stage1_key"] for t in trials}) == 1
    assert Stage1Cache(tmp_path, db.named_lock, CPU).entries() == [trials[0].user_attrs["stage1_key"]]
    db.dispose()


def test_the_key_changes_with_what_determines_stage1_only() -> None:
    assert stage1_key(TINY) == stage1_key(with_fields(TINY, {"stage2.weight_decay": 0.5, "stage2.loss": "ce"}))
    assert stage1_key(TINY) != stage1_key(with_fields(TINY, {"stage1.weight_decay": 1e-3}))
    assert stage1_key(TINY) != stage1_key(with_fields(TINY, {"seed": 1}))
    assert stage1_key(TINY) != stage1_key(with_fields(TINY, {"data.imbalance_factor": 10}))
    # flip TTA needs flipped val/test features in the bank, which a bank without them cannot serve
    assert stage1_key(TINY) != stage1_key(with_fields(TINY, {"eval.flip_tta": True}))


def _race(url: str, artifact_dir: str, start: multiprocessing.synchronize.Barrier) -> bool:
    db = Database.connect(url)
    cache = Stage1Cache(Path(artifact_dir), db.named_lock, CPU)
    start.wait()
    trained = cache.backbone_for(TINY).trained_here
    db.dispose()
    return trained


@pytest.mark.multiprocess
@pytest.mark.postgres
def test_two_workers_missing_the_same_key_train_it_once(postgres_url: str, tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")
    start = context.Manager().Barrier(2)
    with context.Pool(2) as pool:
        trained = pool.starmap(_race, [(postgres_url, str(tmp_path), start)] * 2)
    assert sorted(trained) == [False, True]
    assert len(Stage1Cache(tmp_path, lambda name: None, CPU).entries()) == 1


def test_a_crashed_training_leaves_no_cache_entry(sqlite_url: str, tmp_path: Path) -> None:
    db = Database.connect(sqlite_url)
    cache = Stage1Cache(tmp_path, db.named_lock, CPU)
    with pytest.raises(TrainingDivergedError):
        cache.backbone_for(with_fields(TINY, {"stage1.lr": 1e12}))
    assert cache.entries() == []
    assert not any(tmp_path.rglob("*.pt"))
    db.dispose()
