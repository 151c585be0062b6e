"""Storage: the tables, the drivers and every query the queue runs. Knows nothing of HTTP.

Entry points: ``storage.engine.open_store`` and ``storage.store.JobStore``.
"""
