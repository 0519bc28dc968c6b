"""Confirmation over seeds (three columns of tailtune_study) and tailtune_comparison (studies/store/comparisons.py).

A study with confirmation keeps its confirmation runs in a linked Optuna study (`confirm_study_id`), so its
sampler never reads them; `confirm_plan_json` is the list of (search trial, seed) runs fixed when the search
budget was spent, `confirm_planned` its length, which the done test compares in SQL.

Revision ID: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tailtune_study") as batch:
        batch.add_column(sa.Column("confirm_study_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("confirm_planned", sa.Integer, nullable=True))
        batch.add_column(sa.Column("confirm_plan_json", sa.Text, nullable=True))
    op.create_table(
        "tailtune_comparison",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.String(512), nullable=False, unique=True),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    op.drop_table("tailtune_comparison")
    with op.batch_alter_table("tailtune_study") as batch:
        batch.drop_column("confirm_plan_json")
        batch.drop_column("confirm_planned")
        batch.drop_column("confirm_study_id")
