"""The workers table (one row per worker process, written by its heartbeat) and the index of
finished jobs by when they finished (the dashboard's reads), issue 16.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)
# As storage/tables.py words it (the schema check compares the partial indexes by name).
_FINISHED = sa.text("status IN ('complete', 'error')")


def upgrade() -> None:
    # A database 0.1.0's push made is completed from the current models before it is stamped
    # at 0001 (storage.migrate), so it may hold both already: create only what is missing.
    inspector = sa.inspect(op.get_bind())
    if not inspector.has_table("visionWorkers"):
        _create_workers()
    if "idx_finished" not in {i["name"] for i in inspector.get_indexes("visionJobs")}:
        op.create_index(
            "idx_finished",
            "visionJobs",
            ["updatedAt"],
            sqlite_where=_FINISHED,
            postgresql_where=_FINISHED,
        )


def _create_workers() -> None:
    op.create_table(
        "visionWorkers",
        sa.Column("workerId", sa.String(64), primary_key=True, nullable=False),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("startedAt", _TS, nullable=False),
        sa.Column("lastSeenAt", _TS, nullable=False),
        sa.Column("concurrency", sa.Integer(), nullable=False),
        sa.Column("running", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    op.drop_index("idx_finished", table_name="visionJobs")
    op.drop_table("visionWorkers")
