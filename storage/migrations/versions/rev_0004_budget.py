"""createJob's idempotencyKey (two columns on visionJobs, the unique index of (userId, key)
and the index the housekeeping clears old keys by) and the users' daily spending budgets
(users.dailyBudgetUsd, and the index a user's spend today is read by), issue 17.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

adds_columns = (
    ("visionJobs", "idempotencyKey"),
    ("visionJobs", "idempotencyFingerprint"),
    ("users", "dailyBudgetUsd"),
)

# As storage/tables.py words it (the schema check compares the partial indexes by name).
_KEYED = sa.text('"idempotencyKey" IS NOT NULL')
# idx_userId_updatedAt holds finished jobs only (storage.tables.FINISHED_JOB, frozen here).
_FINISHED = "status IN ('complete', 'error')"
_COLUMNS = (
    ("visionJobs", sa.Column("idempotencyKey", sa.String(200), nullable=True)),
    ("visionJobs", sa.Column("idempotencyFingerprint", sa.String(64), nullable=True)),
    ("users", sa.Column("dailyBudgetUsd", sa.Float(), nullable=True)),
)


def upgrade() -> None:
    # A database 0.1.0's push made is completed from the current models before it is stamped
    # at 0001 (storage.migrate), so it may hold all of this already: add only what is missing.
    # Nullable columns without a default: a plain ADD COLUMN on both dialects (no table copy,
    # so SQLite's triggers stay).
    inspector = sa.inspect(op.get_bind())
    for table, column in _COLUMNS:
        if column.name not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, column)
    indexes = {i["name"] for i in inspector.get_indexes("visionJobs")}
    if "uq_jobs_userId_idempotencyKey" not in indexes:
        op.create_index(
            "uq_jobs_userId_idempotencyKey",
            "visionJobs",
            ["userId", "idempotencyKey"],
            unique=True,
            sqlite_where=_KEYED,
            postgresql_where=_KEYED,
        )
    if "idx_keyed_createdAt" not in indexes:
        op.create_index(
            "idx_keyed_createdAt",
            "visionJobs",
            ["createdAt"],
            sqlite_where=_KEYED,
            postgresql_where=_KEYED,
        )
    if "idx_userId_updatedAt" not in indexes:
        finished = sa.text(_FINISHED)
        op.create_index(
            "idx_userId_updatedAt",
            "visionJobs",
            ["userId", "updatedAt"],
            sqlite_where=finished,
            postgresql_where=finished,
        )


def downgrade() -> None:
    op.drop_index("idx_userId_updatedAt", table_name="visionJobs")
    op.drop_index("idx_keyed_createdAt", table_name="visionJobs")
    op.drop_index("uq_jobs_userId_idempotencyKey", table_name="visionJobs")
    # Plain DROP COLUMN (SQLite 3.35+): a batch would copy visionJobs into a new table and
    # lose its triggers.
    op.drop_column("visionJobs", "idempotencyFingerprint")
    op.drop_column("visionJobs", "idempotencyKey")
    op.drop_column("users", "dailyBudgetUsd")
