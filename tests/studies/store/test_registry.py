"""The study registry's contract, run against PostgreSQL and SQLite alike (optuna's StorageSupplier)."""

from __future__ import annotations

import threading
import uuid
from pathlib import Path

import optuna
import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from studies.definition.spec import StudySpec, parse_spec
from studies.run.worker import WorkerSettings, one_at_a_time, run_worker
from studies.store import registry
from studies.store.db import Database
from studies.store.storage import Storage
from studies.store.tables import study_table
from tailtune.cli import app as tailtune_app
from tailtune.commands import study as study_command
from tests.trial_runners import instant_runner
from trainers.errors import UserInputError

QUICK = WorkerSettings(heartbeat_interval=1, grace_period=3, poll_interval_s=0.1, handle_signals=False)


def make_spec(name: str = "wb-digits", n_trials: int = 4, **fields: object) -> StudySpec:
    return parse_spec({"name": name, "n_trials": n_trials, "sampler": "random", "confirm": None, **fields})


def optuna_study_names(db: Database) -> list[str]:
    return optuna.get_all_study_names(storage=db.optuna_storage())


def row_count(db: Database) -> int:
    with db.engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(study_table)).scalar_one()


def test_create_then_read_back_by_id_name_list_and_optuna(database: Database) -> None:
    spec = make_spec(objectives=["all", "few"], fixed={"stage1.epochs": 2})
    created = registry.create_study(database, spec=spec)

    assert registry.get_study(database, study_id=created.id) == created
    assert registry.get_study_by_name(database, name="wb-digits") == created
    assert created.spec == spec and created.state == "active" and created.n_trials == 4
    assert created.counts.finished == 0 and created.best_trial_number is None
    loaded = optuna.load_study(study_name="wb-digits", storage=database.optuna_storage())
    assert loaded._study_id == created.id
    assert [d.name for d in loaded.directions] == ["MAXIMIZE", "MAXIMIZE"]
    assert StudySpec.model_validate(loaded.user_attrs[registry.SPEC_ATTR]) == spec


def test_list_studies_pages_and_filters_by_state(database: Database) -> None:
    ids = [registry.create_study(database, spec=make_spec(f"s{i}")).id for i in range(3)]
    registry.stop_study(database, study_id=ids[1])

    page = registry.list_studies(database, offset=1, limit=1)
    assert (page.total, [s.name for s in page.items]) == (3, ["s1"])
    assert [s.name for s in registry.list_studies(database, offset=0, limit=10).items] == ["s0", "s1", "s2"]
    stopped = registry.list_studies(database, state="stopped", offset=0, limit=10)
    assert [s.name for s in stopped.items] == ["s1"]
    assert registry.list_studies(database, state="active", offset=0, limit=10).total == 2

    # Budget used up by a plain Optuna client, which never stores "done": the filter agrees with the record.
    study = optuna.load_study(study_name="s2", storage=database.optuna_storage())
    for _ in range(4):
        study.tell(study.ask(), 1.0)
    done = registry.list_studies(database, state="done", offset=0, limit=10)
    assert [(s.name, s.state) for s in done.items] == [("s2", "done")] and done.total == 1
    assert [s.name for s in registry.list_studies(database, state="active", offset=0, limit=10).items] == ["s0"]


def test_duplicate_name_is_refused_and_the_first_study_kept(database: Database) -> None:
    first = registry.create_study(database, spec=make_spec(n_trials=4))
    with pytest.raises(registry.StudyExistsError, match="wb-digits"):
        registry.create_study(database, spec=make_spec(n_trials=9))
    assert optuna_study_names(database) == ["wb-digits"] and row_count(database) == 1
    assert registry.get_study_by_name(database, name="wb-digits").n_trials == first.n_trials == 4


def test_concurrent_creates_of_one_name_leave_one_study(database: Database) -> None:
    outcomes: list[str] = []

    def create() -> None:
        try:
            registry.create_study(database, spec=make_spec())
            outcomes.append("created")
        except registry.StudyExistsError:
            outcomes.append("exists")

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created", "exists", "exists", "exists"]
    assert optuna_study_names(database) == ["wb-digits"] and row_count(database) == 1


@pytest.mark.postgres
def test_a_failure_after_the_optuna_study_exists_removes_it_again(postgres_database: Database,
                                                                  postgres_url: str) -> None:
    # A role that may write Optuna's tables but not ours: the second step of create_study fails for real.
    role = f"tailtune_limited_{uuid.uuid4().hex[:8]}"
    with postgres_database.engine.begin() as connection:
        for statement in (f'CREATE ROLE "{role}" LOGIN',
                          f'GRANT ALL ON ALL TABLES IN SCHEMA public TO "{role}"',
                          f'GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO "{role}"',
                          f'REVOKE INSERT ON tailtune_study FROM "{role}"'):
            connection.exec_driver_sql(statement)
    try:
        limited = Database.connect(sa.make_url(postgres_url).set(username=role).render_as_string(False))
        with pytest.raises(sa.exc.ProgrammingError, match="permission denied for table tailtune_study"):
            registry.create_study(limited, spec=make_spec())
        limited.dispose()
        assert optuna_study_names(postgres_database) == [] and row_count(postgres_database) == 0
    finally:
        with postgres_database.engine.begin() as connection:
            connection.exec_driver_sql(f'DROP OWNED BY "{role}"')
            connection.exec_driver_sql(f'DROP ROLE "{role}"')


def test_bad_spec_from_the_cli_writes_nothing(storage_url: str) -> None:
    result = CliRunner().invoke(study_command.app, ["create", "bad", "--n-trials", "4", "--storage",
                                                    storage_url, "--space", "stage2.tau=3:1"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: invalid study spec")
    assert "low (3.0) must be <= high" in result.output
    assert "Traceback" not in result.output
    db = Database.connect(storage_url)
    assert optuna_study_names(db) == [] and row_count(db) == 0
    db.dispose()


def test_an_objective_on_a_split_empty_for_the_data_exits_2_naming_it(sqlite_url: str) -> None:
    result = CliRunner().invoke(study_command.app, ["create", "few", "--n-trials", "4", "--storage", sqlite_url,
                                                    "--dataset", "cifar10-lt", "--objective", "few"])
    assert result.exit_code == 2, result.output
    assert "objective few" in result.output and "Few < 20" in result.output and "Traceback" not in result.output


def test_bad_spec_is_refused_before_the_registry_is_called() -> None:
    with pytest.raises(UserInputError, match="n_trials"):
        parse_spec({"name": "x", "n_trials": 0})


def test_stop_lets_no_new_trial_start(database: Database, tmp_path: Path) -> None:
    record = registry.create_study(database, spec=make_spec())
    stopped = registry.stop_study(database, study_id=record.id)
    assert stopped.state == "stopped" and stopped.stop_reason
    summary = run_worker(database, study_names=["wb-digits"], settings=QUICK, artifact_dir=tmp_path,
                         runner=one_at_a_time(instant_runner))
    assert summary.completed == 0
    assert registry.get_study(database, study_id=record.id).counts.finished == 0


def test_delete_refuses_while_a_trial_runs_unless_forced(database: Database) -> None:
    record = registry.create_study(database, spec=make_spec())
    optuna.load_study(study_name="wb-digits", storage=database.optuna_storage()).ask()
    with pytest.raises(registry.StudyBusyError, match="1 running trial"):
        registry.delete_study(database, study_id=record.id)
    assert registry.get_study(database, study_id=record.id).counts.running == 1

    registry.delete_study(database, study_id=record.id, force=True)
    with pytest.raises(registry.StudyNotFoundError):
        registry.get_study(database, study_id=record.id)
    assert optuna_study_names(database) == [] and row_count(database) == 0


def test_a_delete_that_fails_part_way_leaves_the_study_whole(database: Database,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Our row and Optuna's study go in one transaction: before, the row was deleted under the lock and Optuna's
    study after it, so a failure between them left an Optuna study that no tailtune study showed."""
    record = registry.create_study(database, spec=make_spec())

    def fails(self: object, study_id: int) -> None:
        raise RuntimeError("the connection dropped")

    monkeypatch.setattr(Storage, "delete_study", fails)
    with pytest.raises(RuntimeError, match="dropped"):
        registry.delete_study(database, study_id=record.id)
    monkeypatch.undo()
    assert registry.get_study(database, study_id=record.id).name == "wb-digits"
    assert "wb-digits" in optuna_study_names(database) and row_count(database) == 1


def test_a_study_deleted_through_optuna_disappears_and_its_name_is_free(database: Database) -> None:
    registry.create_study(database, spec=make_spec(n_trials=4))
    optuna.delete_study(study_name="wb-digits", storage=database.optuna_storage())
    assert registry.list_studies(database, offset=0, limit=10).total == 0
    assert registry.create_study(database, spec=make_spec(n_trials=6)).n_trials == 6


def test_trials_page_by_number_and_by_value_with_splits(database: Database, tmp_path: Path) -> None:
    record = registry.create_study(database, spec=make_spec(n_trials=7))
    summary = run_worker(database, study_names=["wb-digits"], settings=QUICK, artifact_dir=tmp_path,
                         runner=one_at_a_time(instant_runner))
    assert summary.completed == 7

    by_number = registry.list_trials(database, study_id=record.id, offset=2, limit=3, order="number")
    assert by_number.total == 7 and [t.number for t in by_number.items] == [2, 3, 4]
    everything = registry.list_trials(database, study_id=record.id, offset=0, limit=100, order="value").items
    values = [t.values[0] for t in everything]
    assert values == sorted(values, reverse=True) and len(values) == 7
    top = everything[0]
    assert top.state == "complete" and top.worker == summary.worker_id and top.duration_s is not None
    assert top.val["all"] == pytest.approx(top.values[0])
    assert set(top.test) == {"all", "many", "medium", "few"}
    assert set(top.params) == set(record.spec.resolved_space())

    study = registry.get_study(database, study_id=record.id)
    assert study.state == "done" and study.counts.complete == 7
    assert (study.best_trial_number, study.best_values) == (top.number, top.values)
    assert study.best_params == top.params
    assert study.best_val == top.val and study.best_test == top.test


def test_unknown_ids_and_names_raise_not_found(database: Database) -> None:
    for call in (lambda: registry.get_study(database, study_id=999),
                 lambda: registry.get_study_by_name(database, name="nope"),
                 lambda: registry.list_trials(database, study_id=999),
                 lambda: registry.stop_study(database, study_id=999),
                 lambda: registry.delete_study(database, study_id=999)):
        with pytest.raises(registry.StudyNotFoundError):
            call()


def test_cli_create_run_status_best(storage_url: str) -> None:
    cli = CliRunner()
    created = cli.invoke(study_command.app, [
        "create", "cli-study", "--n-trials", "3", "--storage", storage_url, "--sampler", "random",
        "--objective", "all", "--objective", "few", "--fix", "stage1.epochs=2",
        "--space", "stage2.maxnorm_thresh=0.1:0.9", "--space", "stage2.loss=ce,cb"])
    assert created.exit_code == 0, created.output
    ran = cli.invoke(tailtune_app, [
        "worker", "--study", "cli-study", "--storage", storage_url, "--heartbeat-interval", "1", "--grace-period",
        "3", "--trial-runner", "tests.trial_runners:instant_runner"])
    assert ran.exit_code == 0, ran.output
    status = cli.invoke(study_command.app, ["status", "cli-study", "--storage", storage_url, "--json"])
    record = registry.StudyRecord.model_validate_json(status.stdout)
    assert record.counts.complete == 3 and record.state == "done"
    assert record.spec.fixed == {"stage1.epochs": 2} and record.spec.objectives == ["all", "few"]
    assert record.spec.search_space["stage2.maxnorm_thresh"].high == 0.9
    best = cli.invoke(study_command.app, ["best", "cli-study", "--storage", storage_url])
    assert best.exit_code == 0 and f"#{record.best_trial_number}" in best.stdout and "Medium" in best.stdout


def test_cli_errors_are_one_line_with_exit_code_two(sqlite_url: str) -> None:
    cli = CliRunner()
    for arguments in (["status", "missing", "--storage", sqlite_url],
                      ["create", "x", "--n-trials", "2", "--storage", "mysql://db/x"],
                      ["create", "x", "--n-trials", "2", "--storage", sqlite_url, "--space", "stage2.tau"],
                      ["status", "x"]):
        result = cli.invoke(study_command.app, arguments, env={"TAILTUNE_DATABASE_URL": ""})
        assert result.exit_code == 2, (arguments, result.output)
        assert result.output.startswith("error: ") and "Traceback" not in result.output, result.output
