"""The result cache, per stage (issue 17): each stage's cache key on the job with its index,
the job's ``bypassCache`` (createJob's ``cache: false``), and on an attempt the job each
stage's answer was reused from.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

# storage.migrate reads this: the columns this revision adds (not 0.1.0's own).
adds_columns = (
    ("visionJobs", "visionCacheKey"),
    ("visionJobs", "contentCacheKey"),
    ("visionJobs", "bypassCache"),
    ("visionJobSessions", "geminiCachedFrom"),
    ("visionJobSessions", "deepseekCachedFrom"),
)


def _columns() -> dict[str, list[sa.Column[object]]]:
    return {
        "visionJobs": [
            sa.Column("visionCacheKey", sa.String(64), nullable=True),
            sa.Column("contentCacheKey", sa.String(64), nullable=True),
            # Existing jobs take the cache as every job did: not bypassed.
            sa.Column("bypassCache", sa.Boolean(), nullable=False, server_default=sa.text("FALSE")),
        ],
        "visionJobSessions": [
            sa.Column("geminiCachedFrom", sa.Integer(), nullable=True),
            sa.Column("deepseekCachedFrom", sa.Integer(), nullable=True),
        ],
    }


# Partial (the keyed jobs only): the text is storage.tables' conditions as of this revision,
# frozen here so that the revision does not change when the models do.
_INDEXES = (
    ("idx_visionCacheKey", "visionCacheKey", '"visionCacheKey" IS NOT NULL'),
    ("idx_contentCacheKey", "contentCacheKey", '"contentCacheKey" IS NOT NULL'),
)


def upgrade() -> None:
    # A database 0.1.0's push made is completed from the current models before it is stamped
    # at 0001 (storage.migrate), so it may hold all of this already: add only what is missing.
    inspector = sa.inspect(op.get_bind())
    for table, columns in _columns().items():
        existing = {c["name"] for c in inspector.get_columns(table)}
        for column in columns:
            if column.name not in existing:
                op.add_column(table, column)
    indexes = {i["name"] for i in inspector.get_indexes("visionJobs")}
    for index, column_name, where in _INDEXES:
        if index not in indexes:
            condition = sa.text(where)
            op.create_index(
                index,
                "visionJobs",
                [column_name],
                sqlite_where=condition,
                postgresql_where=condition,
            )


def downgrade() -> None:
    for index, _, _ in _INDEXES:
        op.drop_index(index, table_name="visionJobs")
    # Plain DROP COLUMN (SQLite 3.35+): a batch would copy visionJobs into a new table and
    # lose its triggers.
    for table, columns in _columns().items():
        for column in columns:
            op.drop_column(table, column.name)
