"""tailtune's own tables, migrated by Alembic next to Optuna's (which Optuna migrates itself).

Run programmatically on a connect that finds them behind (`upgrade_schema`), under a lock, with a version table of
our own (`tailtune_alembic_version`) so Optuna's `alembic_version` is never touched.
"""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

VERSION_TABLE = "tailtune_alembic_version"
SCRIPTS = Path(__file__).parent


@functools.cache
def head() -> str:
    """The newest revision, read from the scripts once per process."""
    return ScriptDirectory(str(SCRIPTS)).get_current_head()


def is_current(connection: sa.Connection) -> bool:
    """tailtune's tables are at the newest revision."""
    return MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE}).get_current_revision() \
        == head()


def upgrade_schema(connection: sa.Connection) -> None:
    """Brings tailtune's tables to the newest revision inside the caller's transaction."""
    config = Config()
    config.set_main_option("script_location", str(SCRIPTS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
