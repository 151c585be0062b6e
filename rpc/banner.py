"""The one line ``serve`` and ``worker`` log at start: what this process runs against."""

from __future__ import annotations

from importlib.metadata import version

from rpc.config import Settings
from storage.errors import mask_url
from storage.migrate import HEAD, Upgrade


def _providers(settings: Settings) -> str:
    """Which provider each stage uses, as pipeline.service.build_providers chooses them."""
    real = settings.providers == "auto"
    vision = f"gemini ({settings.gemini_model})" if real and settings.gemini_api_key else "offline"
    content = (
        f"deepseek ({settings.deepseek_model})" if real and settings.deepseek_api_key else "offline"
    )
    return f"vision={vision} content={content}"


def _schema(upgrade: Upgrade | None) -> str:
    if upgrade is None:
        return f"schema {HEAD} (not upgraded: MIGRATE_ON_START=false)"
    if upgrade.before is None and not upgrade.stamped:
        return f"schema {upgrade.after} (created)"
    if upgrade.stamped or upgrade.before != upgrade.after:
        return f"schema {upgrade.after} (upgraded from {upgrade.before or '0.1.0'})"
    repaired = f", restored: {', '.join(upgrade.repaired)}" if upgrade.repaired else ""
    return f"schema {upgrade.after} (up to date{repaired})"


def banner(settings: Settings, role: str, upgrade: Upgrade | None, concurrency: str) -> str:
    auth = "local (no JWT_SECRET)" if settings.local_mode else "JWT"
    return (
        f"vision-pipeline {version('vision-pipeline')} {role}: "
        f"database {mask_url(settings.database_url)}, {_schema(upgrade)}; auth {auth}; "
        f"providers {_providers(settings)}; {concurrency}"
    )
