"""tailtune_study (one row per Optuna study tailtune created) and tailtune_worker (worker liveness).

Also indexes on Optuna's `trials` table that paged trial lists and budget counts need at 10k trials.

Revision ID: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tailtune_study",
        # The Optuna study id, so one id names a study in tailtune, Optuna and optuna-dashboard alike.
        sa.Column("id", sa.Integer, sa.ForeignKey("studies.study_id", ondelete="CASCADE"), primary_key=True,
                  autoincrement=False),
        sa.Column("name", sa.String(512), nullable=False, unique=True),
        sa.Column("state", sa.String(16), nullable=False, server_default="active"),
        sa.Column("method", sa.String(32), nullable=False),
        sa.Column("dataset", sa.Text, nullable=False),
        sa.Column("n_trials", sa.Integer, nullable=False),
        sa.Column("spec_json", sa.Text, nullable=False),
        sa.Column("consecutive_failures", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stop_reason", sa.Text, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("state IN ('active', 'stopped', 'done')", name="ck_tailtune_study_state"),
    )
    op.create_index("ix_tailtune_study_state", "tailtune_study", ["state"])
    op.create_table(
        "tailtune_worker",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("heartbeat_interval_s", sa.Integer, nullable=False),
        sa.Column("current_study_id", sa.Integer, nullable=True),
        sa.Column("current_trial_number", sa.Integer, nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.CheckConstraint("state IN ('idle', 'running', 'stopping', 'exited')",
                           name="ck_tailtune_worker_state"),
    )
    op.create_index("ix_tailtune_worker_last_seen", "tailtune_worker", ["last_seen"])
    # Budget counts (per study and state) and paged trial lists (per study, by number) on Optuna's table.
    op.create_index("ix_tailtune_trials_study_state", "trials", ["study_id", "state"])
    op.create_index("ix_tailtune_trials_study_number", "trials", ["study_id", "number"])


def downgrade() -> None:
    op.drop_index("ix_tailtune_trials_study_number", "trials")
    op.drop_index("ix_tailtune_trials_study_state", "trials")
    op.drop_table("tailtune_worker")
    op.drop_table("tailtune_study")
