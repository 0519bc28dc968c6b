"""`Database.connect` brings the schema to what the running code needs: Optuna's tables created and their version
checked, tailtune's own migrated; a database already there is only read."""

from __future__ import annotations

import optuna
import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from studies.store import db as db_module
from studies.store import migrations
from studies.store.db import Database
from studies.store.storage import OPTUNA_SCHEMA_HEAD


def test_a_new_database_gets_both_schemas_at_their_heads(empty_postgres_url: str) -> None:
    Database.connect(empty_postgres_url).dispose()
    engine = sa.create_engine(empty_postgres_url)
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == OPTUNA_SCHEMA_HEAD
        assert connection.execute(sa.text(f"SELECT version_num FROM {migrations.VERSION_TABLE}")).scalar() == \
            migrations.head()
    engine.dispose()


def test_optuna_tables_at_an_older_schema_are_refused_with_the_command_that_upgrades_them(sqlite_url: str) -> None:
    with sa.create_engine(sqlite_url).begin() as connection:
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'v3.0.0.d'"))
    with pytest.raises(RuntimeError, match="at schema v3.0.0.d.*optuna storage upgrade"):
        Database.connect(sqlite_url)


def test_tailtune_tables_at_an_older_revision_are_migrated_at_connect(empty_postgres_url: str) -> None:
    optuna.storages.RDBStorage(empty_postgres_url).engine.dispose()  # Optuna's tables, which ours reference
    engine = sa.create_engine(empty_postgres_url)
    with engine.begin() as connection:
        config = Config()
        config.set_main_option("script_location", str(migrations.SCRIPTS))
        config.attributes["connection"] = connection
        command.upgrade(config, "0003")
    assert not sa.inspect(engine).has_table("tailtune_comparison")

    Database.connect(empty_postgres_url).dispose()
    assert sa.inspect(engine).has_table("tailtune_comparison")
    with engine.connect() as connection:
        assert connection.execute(sa.text(f"SELECT version_num FROM {migrations.VERSION_TABLE}")).scalar() == \
            migrations.head()
    engine.dispose()


def test_a_database_at_both_heads_is_read_not_locked_or_migrated(storage_url: str,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    def must_not_run(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("a database already at both heads was locked or migrated again")

    monkeypatch.setattr(db_module, "create_or_check_schema", must_not_run)
    monkeypatch.setattr(db_module, "upgrade_schema", must_not_run)
    monkeypatch.setattr(Database, "named_lock", must_not_run)
    Database.connect(storage_url).dispose()
