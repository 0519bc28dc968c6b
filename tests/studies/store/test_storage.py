"""studies/store/storage.py, tailtune's one boundary with Optuna's internals: Optuna's own storage contract suite
against it (PostgreSQL with and without heartbeats, SQLite), the version it was written for, and Optuna's CLI on a
tailtune database."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.storages._rdb import models
from optuna.testing.pytest_storages import StorageTestCase

from studies.definition.spec import parse_spec
from studies.store import registry
from studies.store import storage as storage_module
from studies.store.db import Database
from studies.store.storage import OPTUNA_SCHEMA_HEAD, OPTUNA_VERSION, Storage


@pytest.fixture(scope="module")
def module_postgres(postgres_server) -> Iterator[Database]:
    # One database for the whole suite (each test leaves it empty): a fresh one per contract test costs seconds.
    name = postgres_server.create_database()
    postgres_server.skip_commit_flushes(name)
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
    # Every row of studies and trials, child tables first: Optuna's delete_study took 20 ms a study.
    with storage.engine.begin() as connection:
        for table in reversed(models.BaseModel.metadata.sorted_tables):
            if table.name != models.VersionInfoModel.__tablename__:
                connection.execute(table.delete())


# Not again with heartbeats: Optuna reads the heartbeat settings only in its heartbeat methods, which the contract
# suite never calls (tests/studies/store/test_claims.py and tests/integration exercise them).
@pytest.mark.postgres
class TestOnPostgres(StorageTestCase):
    @pytest.fixture
    def storage(self, module_postgres: Database) -> Iterator[Storage]:
        yield from _emptied_after(module_postgres.optuna_storage())


class TestOnSqlite(StorageTestCase):
    @pytest.fixture
    def storage(self, module_sqlite: Database) -> Iterator[Storage]:
        yield from _emptied_after(module_sqlite.optuna_storage())


# What studies/store/storage.py takes from Optuna below its public API: every private name it touches (checked
# below against the module's source) and the unstated behaviour it relies on. Re-check each when Optuna changes.
RECHECK = {
    "optuna.storages._rdb": "models: the table objects and their columns, TrialValueModel.TrialValueType.FINITE, "
                            "TrialValueModel.stored_repr_to_value",
    "optuna.study._tell": "_tell_with_warning: Study.tell minus its closing re-read, returning the state told",
    "alembic": "Optuna's migration scripts in the alembic folder next to optuna/storages/_rdb/models.py, whose head "
               "_optuna_schema_head reads (checked against RDBStorage.get_head_version below)",
    "_version_manager": "RDBStorage._version_manager's engine and scoped_session, pointed at the Database's",
    "_storage": "study._storage: the _CachedStorage around the RDBStorage (start_trials goes through it)",
    "_backend": "_CachedStorage._backend: the RDBStorage behind a trial's storage",
    "_study_id": "study._study_id",
    "_trial_id": "trial._trial_id",
    "_thread_local": "study._thread_local.cached_all_trials: None makes the sampler re-read the trials",
    "_cached_frozen_trial": "trial._cached_frozen_trial.user_attrs, kept in step with a bulk write",
    "_get_stale_trial_ids": "RDBStorage._get_stale_trial_ids(study_id): RUNNING trials past the grace period",
    "engine, scoped_session": "RDBStorage.__init__'s engine and scoped_session attributes, replaced by ours; "
                              "__getstate__'s engine_kwargs",
    "rollbacks": "_create_scoped_session rolls back on any error and ignores some IntegrityErrors "
                 "(Storage.one_transaction turns either into TransactionAbortedError)",
    "datetimes": "set_trial_state_values stores naive local datetime.now() (fail_and_retry writes the same)",
    "retries": "RetryHeartbeatStaleTrialCallback copies a failed trial's system attrs to its clone "
               "(claims._record_claim replaces the worker and claim token)",
    "updatable": "check_trial_is_updatable's UpdateFinishedTrialError message (storage._check_updatable repeats it)",
}


def test_the_installed_optuna_is_the_one_the_storage_was_written_for(sqlite_url: str) -> None:
    head = optuna.storages.RDBStorage(sqlite_url).get_head_version()
    assert storage_module._optuna_schema_head() == head
    recheck = "\n".join(f"- {name}: {what}" for name, what in RECHECK.items())
    assert (optuna.__version__, head) == (OPTUNA_VERSION, OPTUNA_SCHEMA_HEAD), (
        f"optuna {optuna.__version__} (schema head {head}) is installed, but studies/store/storage.py was written and "
        f"tested against optuna {OPTUNA_VERSION} (schema head {OPTUNA_SCHEMA_HEAD}). Re-check everything that "
        f"module takes from Optuna's internals:\n{recheck}\nthen run this suite and update the two constants.")


def test_every_private_optuna_name_the_storage_touches_is_on_the_recheck_list() -> None:
    tree = ast.parse(Path(storage_module.__file__).read_text())
    own = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store)
           and isinstance(node.value, ast.Name) and node.value.id == "self"} - {"_version_manager"}
    touched = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)
               and node.attr.startswith("_") and not node.attr.startswith("__")} - own
    touched |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module
                and node.module.startswith("optuna") and "._" in node.module}
    listed = {name for key in RECHECK for name in key.split(", ")}
    assert touched <= listed, f"add to RECHECK what storage.py now takes from Optuna: {sorted(touched - listed)}"


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
