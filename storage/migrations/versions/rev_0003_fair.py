"""The index of waiting jobs by user (the fair claim's round-robin over users), issue 17.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

# No columns: an index only.
adds_columns: tuple[tuple[str, str], ...] = ()
# As storage/tables.py words it (the schema check compares the partial indexes by name),
# frozen here: on PostgreSQL in the form only the fair claim's statements use, so that no
# other index can serve them (storage.tables.FAIR_WAITING_JOB says why).
_PENDING = sa.text("status = 'pending'")
_PENDING_PG = sa.text("(status = 'pending') IS TRUE")


def upgrade() -> None:
    # A database 0.1.0's push made is completed from the current models before it is stamped
    # at 0001 (storage.migrate), so it may hold the index already: create it only if missing.
    inspector = sa.inspect(op.get_bind())
    if "idx_fair" not in {i["name"] for i in inspector.get_indexes("visionJobs")}:
        op.create_index(
            "idx_fair",
            "visionJobs",
            ["userId", "runAfter", "id"],
            sqlite_where=_PENDING,
            postgresql_where=_PENDING_PG,
        )


def downgrade() -> None:
    op.drop_index("idx_fair", table_name="visionJobs")
