"""tailtune's own tables, as the migrations in studies/store/migrations/versions create them. Optuna's tables are
taken from Optuna in studies/store/storage.py, the one module that touches Optuna's internals."""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()
study_table = sa.Table(
    "tailtune_study", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("name", sa.String(512)),
    sa.Column("state", sa.String(16)),
    sa.Column("method", sa.String(32)),
    sa.Column("dataset", sa.Text),
    sa.Column("n_trials", sa.Integer),
    sa.Column("spec_json", sa.Text),
    sa.Column("consecutive_failures", sa.Integer),
    sa.Column("stop_reason", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("updated_at", sa.DateTime(timezone=True)),
    sa.Column("confirm_study_id", sa.Integer),
    sa.Column("confirm_planned", sa.Integer),
    sa.Column("confirm_plan_json", sa.Text),
)
comparison_table = sa.Table(
    "tailtune_comparison", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(512)),
    sa.Column("spec_json", sa.Text),
    sa.Column("created_at", sa.DateTime(timezone=True)),
)
worker_table = sa.Table(
    "tailtune_worker", metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("host", sa.String(255)),
    sa.Column("pid", sa.Integer),
    sa.Column("state", sa.String(16)),
    sa.Column("heartbeat_interval_s", sa.Integer),
    sa.Column("current_study_id", sa.Integer),
    sa.Column("current_trial_number", sa.Integer),
    sa.Column("started_at", sa.DateTime(timezone=True)),
    sa.Column("last_seen", sa.DateTime(timezone=True)),
)
token_table = sa.Table(
    "tailtune_token", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("name", sa.String(100)),
    sa.Column("scope", sa.String(8)),
    sa.Column("digest", sa.String(64)),
    sa.Column("created_at", sa.DateTime(timezone=True)),
    sa.Column("revoked_at", sa.DateTime(timezone=True)),
    sa.Column("expires_at", sa.DateTime(timezone=True)),
    sa.Column("last_used_at", sa.DateTime(timezone=True)),
)
