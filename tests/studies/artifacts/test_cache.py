"""The stage-1 cache: one training per key, shared by trials and by racing worker processes."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import multiprocessing.managers
import multiprocessing.pool
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest

from studies.artifacts.cache import ENTRY_FILES, QUARANTINE, Stage1Cache, damage, stage1_key
from studies.definition.spec import parse_spec
from studies.run.worker import WorkerSettings, run_worker
from studies.store import registry
from studies.store.db import Database
from trainers.config import RunOptions, with_fields
from trainers.device import resolve_runtime
from trainers.errors import TrainingDivergedError
from trainers.presets import method_defaults

CPU = resolve_runtime(RunOptions(device="cpu"))
TINY = with_fields(method_defaults("wb"), {"stage1.epochs": 2})


def test_a_wb_study_with_lambda1_fixed_trains_stage1_once(storage_url: str, tmp_path: Path) -> None:
    db = Database.connect(storage_url)
    spec = parse_spec({"name": "cached", "method": "wb", "n_trials": 10, "confirm": None,
                       "fixed": {"stage1.epochs": 2, "stage1.lr": 0.01, "stage1.weight_decay": 5e-3}})
    registry.create_study(db, spec=spec)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False)
    run_worker(db, study_names=["cached"], settings=settings, artifact_dir=tmp_path)
    trials = optuna.load_study(study_name="cached", storage=storage_url).trials
    assert [t.state for t in trials].count(optuna.trial.TrialState.COMPLETE) == 10
    assert sum(t.user_attrs["stage1_trained"] for t in trials) == 1
    assert len({t.user_attrs["stage1_key"] for t in trials}) == 1
    assert [entry.name for entry in (tmp_path / "stage1").iterdir()] == [trials[0].user_attrs["stage1_key"]]
    db.dispose()


def test_the_key_changes_with_what_determines_stage1_only() -> None:
    assert stage1_key(TINY) == stage1_key(with_fields(TINY, {"stage2.weight_decay": 0.5, "stage2.loss": "ce"}))
    assert stage1_key(TINY) != stage1_key(with_fields(TINY, {"stage1.weight_decay": 1e-3}))
    assert stage1_key(TINY) != stage1_key(with_fields(TINY, {"seed": 1}))
    assert stage1_key(TINY) != stage1_key(with_fields(TINY, {"data.imbalance_factor": 10}))
    # flip TTA needs flipped val/test features in the bank, which a bank without them cannot serve
    assert stage1_key(TINY) != stage1_key(with_fields(TINY, {"eval.flip_tta": True}))


def test_tau_norm_reads_the_backbone_wb_and_los_train_with_the_same_stage1() -> None:
    """τ-norm re-trains no head, so the train views in the bank are not its to choose: it shares WB's and LOS's
    cache entry (a comparison's τ-norm study trained its confirmation seeds' backbones again)."""
    stage1 = {"stage1.weight_decay": 2e-3, "stage1.epochs": 3, "seed": 2}
    wb, los, tau_norm = (with_fields(method_defaults(method), stage1) for method in ("wb", "los", "tau-norm"))
    assert stage1_key(tau_norm) == stage1_key(wb) == stage1_key(los)


def _race(url: str, artifact_dir: str, start: multiprocessing.synchronize.Barrier) -> bool:
    db = Database.connect(url)
    cache = Stage1Cache(Path(artifact_dir), db.named_lock, CPU)
    start.wait()
    trained = cache.backbone_for(TINY).trained_here
    db.dispose()
    return trained


@pytest.fixture(scope="module")
def two_processes() -> Iterator[tuple[multiprocessing.pool.Pool, multiprocessing.managers.SyncManager]]:
    """Two processes shared by the racing tests, forked from a fork server that imported this module (torch with
    it) once: spawned, each imported it on its own, 9-14 s of a loaded two-core machine."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with context.Manager() as manager, context.Pool(2) as pool:
        yield pool, manager


@pytest.mark.multiprocess
@pytest.mark.postgres
def test_two_workers_missing_the_same_key_train_it_once(postgres_url: str, tmp_path: Path, two_processes) -> None:
    pool, manager = two_processes
    start = manager.Barrier(2)
    trained = pool.starmap(_race, [(postgres_url, str(tmp_path), start)] * 2, chunksize=1)
    assert sorted(trained) == [False, True]
    assert [entry.name for entry in (tmp_path / "stage1").iterdir()] == [stage1_key(TINY)]


def test_a_crashed_training_leaves_no_cache_entry(sqlite_url: str, tmp_path: Path) -> None:
    db = Database.connect(sqlite_url)
    cache = Stage1Cache(tmp_path, db.named_lock, CPU)
    diverging = with_fields(TINY, {"stage1.lr": 1e12})
    with pytest.raises(TrainingDivergedError):
        cache.backbone_for(diverging)
    assert not cache.has(diverging)
    assert not any(tmp_path.rglob("*.pt"))
    db.dispose()


@contextlib.contextmanager
def _lapsed_lock(name: str, while_waiting: object) -> Iterator[None]:
    """A lock that excludes no one: what two workers hold when a PostgreSQL restart ended the first one's."""
    yield


def _train_without_lock(artifact_dir: str, start: multiprocessing.synchronize.Barrier) -> bool:
    cache = Stage1Cache(Path(artifact_dir), _lapsed_lock, CPU)
    start.wait()
    return cache.backbone_for(TINY).trained_here


@pytest.mark.multiprocess
def test_a_second_writer_of_a_finished_key_keeps_the_first_entry_and_its_trial_goes_on(tmp_path: Path,
                                                                                      two_processes) -> None:
    pool, manager = two_processes
    start = manager.Barrier(2)
    trained = pool.starmap(_train_without_lock, [(str(tmp_path), start)] * 2, chunksize=1)
    assert trained == [True, True]  # both trained, and neither trial failed on the other's entry
    cache = Stage1Cache(tmp_path, _lapsed_lock, CPU)
    assert cache.has(TINY) and damage(cache.root / stage1_key(TINY)) is None
    assert [p.name for p in cache.root.iterdir()] == [stage1_key(TINY)]  # no staging folder left behind


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(("file_name", "harm"), [("model.pt", _truncate), ("features.pt", _flip_last_byte),
                                                 ("stage1.json", _truncate)])
def test_a_damaged_entry_is_quarantined_and_rebuilt_by_the_trial_that_found_it(
        sqlite_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture, file_name: str, harm) -> None:
    db = Database.connect(sqlite_url)
    key = stage1_key(TINY)
    Stage1Cache(tmp_path, db.named_lock, CPU).backbone_for(TINY)
    harm(tmp_path / "stage1" / key / file_name)

    with caplog.at_level(logging.WARNING, logger="studies.artifacts.cache"):
        rebuilt = Stage1Cache(tmp_path, db.named_lock, CPU).backbone_for(TINY)
    assert rebuilt.trained_here and damage(tmp_path / "stage1" / key) is None
    quarantined = list((tmp_path / "stage1" / QUARANTINE).iterdir())
    assert len(quarantined) == 1 and damage(quarantined[0]) is not None
    assert sorted(p.name for p in quarantined[0].iterdir()) == sorted([*ENTRY_FILES, "manifest.json"])
    assert file_name in caplog.text and str(quarantined[0]) in caplog.text
    assert not Stage1Cache(tmp_path, db.named_lock, CPU).backbone_for(TINY).trained_here
    db.dispose()


@pytest.mark.postgres
def test_a_study_after_its_stage1_entry_was_truncated_completes_every_trial(postgres_url: str,
                                                                           tmp_path: Path) -> None:
    """The issue's acceptance: a second study with the same stage-1 settings ends with all trials COMPLETE."""
    db = Database.connect(postgres_url)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False)
    fixed = {"stage1.epochs": 2, "stage1.lr": 0.01, "stage1.weight_decay": 5e-3}
    for name in ("first", "second"):
        registry.create_study(db, spec=parse_spec({"name": name, "n_trials": 2, "fixed": fixed, "confirm": None}))
        run_worker(db, study_names=[name], settings=settings, artifact_dir=tmp_path)
        trials = optuna.load_study(study_name=name, storage=postgres_url).trials
        assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
        assert sum(t.user_attrs["stage1_trained"] for t in trials) == 1
        _truncate(tmp_path / "stage1" / trials[0].user_attrs["stage1_key"] / "model.pt")
    db.dispose()
