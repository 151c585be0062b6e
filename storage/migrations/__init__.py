"""The schema's versioned migrations (Alembic): one revision a schema change."""
