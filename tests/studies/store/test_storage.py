"""studies/store/storage.py, tailtune's one boundary with Optuna's internals: Optuna's own storage contract suite
against it (PostgreSQL with and without heartbeats, SQLite), the version it was written for, and Optuna's CLI on a
tailtune database."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.testing.pytest_storages import StorageTestCase

from studies.definition.spec import parse_spec
from studies.store import registry
from studies.store.db import Database
from studies.store.storage import OPTUNA_SCHEMA_HEAD, OPTUNA_VERSION, Storage


@pytest.fixture(scope="module")
def module_postgres(postgres_server) -> Iterator[Database]:
    # One database for the whole suite (each test leaves it empty): a fresh one per contract test costs seconds.
    name = postgres_server.create_database()
    db = Database.connect(postgres_server.url(name))
    yield db
    db.dispose()
    postgres_server.drop_database(name)


@pytest.fixture(scope="module")
def module_sqlite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Database]:
    db = Database.connect(f"sqlite:///{tmp_path_factory.mktemp('contract') / 'tailtune.db'}")
    yield db
    db.dispose()


def _emptied_after(storage: Storage) -> Iterator[Storage]:
    yield storage
    for study in storage.get_all_studies():
        storage.delete_study(study._study_id)


@pytest.mark.postgres
class TestOnPostgres(StorageTestCase):
    @pytest.fixture
    def storage(self, module_postgres: Database) -> Iterator[Storage]:
        yield from _emptied_after(module_postgres.optuna_storage())


@pytest.mark.postgres
class TestOnPostgresWithHeartbeats(StorageTestCase):
    @pytest.fixture
    def storage(self, module_postgres: Database) -> Iterator[Storage]:
        yield from _emptied_after(module_postgres.optuna_storage(heartbeat_interval=1, grace_period=3, max_retry=3))


class TestOnSqlite(StorageTestCase):
    @pytest.fixture
    def storage(self, module_sqlite: Database) -> Iterator[Storage]:
        yield from _emptied_after(module_sqlite.optuna_storage())


def test_the_installed_optuna_is_the_one_the_storage_was_written_for(sqlite_url: str) -> None:
    head = optuna.storages.RDBStorage(sqlite_url).get_head_version()
    assert (optuna.__version__, head) == (OPTUNA_VERSION, OPTUNA_SCHEMA_HEAD), (
        f"optuna {optuna.__version__} (schema head {head}) is installed, but studies/store/storage.py was written and "
        f"tested against optuna {OPTUNA_VERSION} (schema head {OPTUNA_SCHEMA_HEAD}). Re-check everything that "
        "module takes from Optuna's internals: the table objects of optuna.storages._rdb.models and their columns, "
        "RDBStorage.__init__'s engine and scoped_session, _CachedStorage (study._storage), "
        "study._thread_local.cached_all_trials, trial._cached_frozen_trial, optuna.study._tell._tell_with_warning, "
        "fail_stale_trials and RetryHeartbeatStaleTrialCallback; then run this suite and update the two constants.")


@pytest.mark.postgres
def test_optuna_storage_upgrade_and_delete_study_work_on_a_tailtune_database(postgres_url: str) -> None:
    db = Database.connect(postgres_url)
    registry.create_study(db, spec=parse_spec({"name": "kept", "n_trials": 2}))
    registry.create_study(db, spec=parse_spec({"name": "dropped", "n_trials": 2}))
    optuna_cli = [shutil.which("optuna", path=str(Path(sys.executable).parent)) or "optuna", "--storage",
                  postgres_url]
    upgraded = subprocess.run([*optuna_cli, "storage", "upgrade"], capture_output=True, text=True, timeout=120)
    assert upgraded.returncode == 0, upgraded.stderr
    deleted = subprocess.run([*optuna_cli, "delete-study", "--study-name", "dropped"], capture_output=True,
                             text=True, timeout=120)
    assert deleted.returncode == 0, deleted.stderr
    assert [record.name for record in registry.list_studies(db).items] == ["kept"]
    db.dispose()
    assert Database.connect(postgres_url).optuna_storage().get_current_version() == OPTUNA_SCHEMA_HEAD
