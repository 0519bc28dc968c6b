"""A worker trains the heads of several stage-2 trials of one cached backbone together, and loses none of them."""

from __future__ import annotations

import time
from pathlib import Path

import optuna
import psycopg2
import sqlalchemy as sa
from optuna.trial import TrialState

from studies.artifacts.cache import Stage1Cache
from studies.definition.spec import parse_spec
from studies.run.worker import RunContext, WorkerSettings, run_worker
from studies.store import registry
from studies.store.claims import CLAIM_ATTR
from studies.store.db import Database
from studies.store.storage import trial_heartbeats, trial_id
from tests.trial_runners import sampled_value
from trainers.config import ExperimentConfig, RunOptions
from trainers.device import resolve_runtime
from trainers.experiment import run_stage2

CPU = resolve_runtime(RunOptions(device="cpu"))


def test_batched_trials_get_the_results_each_gets_alone(storage_url: str, tmp_path: Path) -> None:
    db = Database.connect(storage_url)
    # Two lambda_1 values: companions sampled with the other one form their own group on their own backbone.
    spec = parse_spec({"name": "batched", "method": "wb", "n_trials": 14, "sampler": "random", "confirm": None,
                       "search_space": {"stage1.weight_decay": {"type": "categorical", "choices": [5e-4, 5e-3]}},
                       "fixed": {"stage1.epochs": 2, "stage1.lr": 0.01}})
    registry.create_study(db, spec=spec)
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False,
                              batch_trials=4)
    summary = run_worker(db, study_names=["batched"], settings=settings, artifact_dir=tmp_path)

    trials = optuna.load_study(study_name="batched", storage=storage_url).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 14 and summary.completed == 14
    assert max(t.user_attrs["batch_size"] for t in trials) > 1, "no trials were batched"
    keys = {t.user_attrs["stage1_key"] for t in trials}
    assert sum(t.user_attrs["stage1_trained"] for t in trials) == len(keys) == 2
    cache = Stage1Cache(tmp_path, db.named_lock, CPU)
    for trial in trials:
        config = ExperimentConfig.model_validate(trial.user_attrs["config"])
        alone = run_stage2(cache.backbone_for(config).backbone, config, CPU)
        assert alone.val.model_dump() == trial.user_attrs["val"], f"trial {trial.number}"
        assert alone.test.model_dump() == trial.user_attrs["test"], f"trial {trial.number}"
        assert trial.value == alone.val.all
    db.dispose()


def test_every_trial_of_a_batch_is_heartbeated_and_handed_back_when_it_breaks(database: Database,
                                                                              tmp_path: Path) -> None:
    spec = parse_spec({"name": "breaks", "n_trials": 6, "sampler": "random", "confirm": None})
    study_id = registry.create_study(database, spec=spec).id
    settings = WorkerSettings(heartbeat_interval=1, grace_period=2, poll_interval_s=0.1, handle_signals=False,
                              batch_trials=4)
    broken_batch: dict[int, dict] = {}

    def runner(trial: optuna.Trial, spec, context: RunContext) -> list:
        if broken_batch:
            return [[sampled_value(trial, spec)], *[[sampled_value(t, spec)] for t in context.claim_more(3)]]
        claimed_at = time.time()
        batch = [trial, *context.claim_more(3)]
        for member in batch:
            broken_batch[trial_id(member)] = {"params": sampled_value(member, spec)}
        time.sleep(2.5)  # longer than the grace period: only heartbeats keep the batch from being reaped
        with database.engine.connect() as connection:
            beats = dict(connection.execute(sa.select(trial_heartbeats.c.trial_id,
                                                      trial_heartbeats.c.heartbeat)).all())
        for member in batch:
            broken_batch[trial_id(member)]["beat_after_claim"] = beats[trial_id(member)].timestamp() > claimed_at
        raise psycopg2.OperationalError("server closed the connection unexpectedly")  # transient: hand back

    summary = run_worker(database, study_names=["breaks"], settings=settings, artifact_dir=tmp_path, runner=runner)

    assert len(broken_batch) == 4 and all(entry["beat_after_claim"] for entry in broken_batch.values())
    trials = registry.list_trials(database, study_id=study_id, offset=0, limit=100).items
    states = [t.state for t in trials]
    assert states.count("complete") == 6 and states.count("fail") == 4 and "running" not in states
    assert summary.interrupted == 4 and summary.completed == 6
    retried = sorted(t.values[0] for t in trials if t.state == "complete" and t.retried_from is not None)
    assert retried == sorted(entry["params"] for entry in broken_batch.values())


def test_a_companion_that_trains_its_own_backbone_is_judged_by_the_pruner(sqlite_url: str, tmp_path: Path) -> None:
    """A batch's companion whose stage 1 is not cached trains it as a trial alone would: reporting each epoch's val
    to the pruner, which may stop it, instead of a full stage 1 the pruner never sees."""
    db = Database.connect(sqlite_url)
    spec = parse_spec({"name": "pruned", "method": "wb", "n_trials": 5, "sampler": "random", "confirm": None,
                       "pruner": "median", "fixed": {"stage1.epochs": 3, "stage1.lr": 0.01}})
    registry.create_study(db, spec=spec)
    # Enqueued, not sampled: the worker's seed is its own (random) id, and a sampled order batched nothing in one
    # run of three. Trial 0 (the recipe, lambda_1 5e-3) trains its backbone alone; trial 1 finds it cached and
    # claims trials 2-4 as companions, two of whose backbones (1e-2, 2e-2) nobody has trained yet.
    study = optuna.load_study(study_name="pruned", storage=sqlite_url)
    for weight_decay in (5e-3, 1e-2, 2e-2, 1e-2):
        study.enqueue_trial({"stage1.weight_decay": weight_decay})
    settings = WorkerSettings(heartbeat_interval=1, grace_period=3, device="cpu", handle_signals=False,
                              batch_trials=4)
    run_worker(db, study_names=["pruned"], settings=settings, artifact_dir=tmp_path)

    trials = optuna.load_study(study_name="pruned", storage=sqlite_url).trials
    tokens = [t.system_attrs[CLAIM_ATTR] for t in trials]
    assert len(set(tokens[2:])) == 1 and tokens[1] != tokens[2], "trials 2-4 were not claimed as companions"
    trained = [t.number for t in trials if t.user_attrs.get("stage1_trained") or t.state == TrialState.PRUNED]
    assert trained[:3] == [0, 2, 3]
    unjudged = [number for number in trained if not trials[number].intermediate_values]
    assert not unjudged, f"trials {unjudged} trained stage 1 without the pruner"
    db.dispose()
