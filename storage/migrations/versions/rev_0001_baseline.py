"""Baseline: the schema of vision-pipeline 0.1.0 (tables, indexes, partial indexes, triggers).

A database that 0.1.0's ``db push`` made has these already: ``storage.migrate`` recognises it
and stamps it at this revision instead of running it.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

from alembic import op

from storage.migrations import baseline_postgres, baseline_sqlite

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _statements() -> list[str]:
    dialect = op.get_bind().dialect.name
    return baseline_sqlite.STATEMENTS if dialect == "sqlite" else baseline_postgres.STATEMENTS


def upgrade() -> None:
    connection = op.get_bind()
    for statement in _statements():  # as written: no bind-parameter parsing of the DDL
        connection.exec_driver_sql(statement)


def downgrade() -> None:
    for table in ("visionImages", "visionJobEvents", "visionJobSessions", "visionJobOutputs",
                  "visionJobs", "users"):  # fmt: skip
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        for function in ("vision_jobs_inserted", "vision_jobs_updated", "vision_jobs_deleted"):
            op.execute(f"DROP FUNCTION IF EXISTS {function}()")
