"""Alembic's environment, driven from code only (``storage.migrate``): the caller hands in a
connection that already holds the database-wide lock, inside its transaction, so every
revision runs under that lock and commits (or rolls back) with it."""

from __future__ import annotations

from alembic import context

from storage.tables import metadata


def _run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("storage.migrate runs the migrations; alembic's CLI is not set up")
    context.configure(
        connection=connection,
        target_metadata=metadata(),
        # SQLite alters a table by copying it; future revisions need Alembic's batch mode.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


_run()
