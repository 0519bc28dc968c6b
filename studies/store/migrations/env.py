"""Alembic environment: always given a live connection by `studies.store.migrations.upgrade_schema`."""

from __future__ import annotations

from alembic import context

from studies.store.migrations import VERSION_TABLE

context.configure(connection=context.config.attributes["connection"], version_table=VERSION_TABLE,
                  render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
