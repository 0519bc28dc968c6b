"""tailtune's own tables, migrated by Alembic next to Optuna's (which Optuna migrates itself).

Run programmatically on every connect (`upgrade_schema`), under a lock, with a version table of our own
(`tailtune_alembic_version`) so Optuna's `alembic_version` is never touched.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

VERSION_TABLE = "tailtune_alembic_version"


def upgrade_schema(connection: sa.Connection) -> None:
    """Brings tailtune's tables to the newest revision inside the caller's transaction."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")
