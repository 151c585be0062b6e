"""All settings of the server: the pipeline's plus the HTTP side's (SEED_API §6)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline.config import PipelineSettings


class Settings(PipelineSettings):
    jwt_secret: str | None = None
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # "auto": answer superjson to superjson clients, plain JSON to others (per request).
    trpc_transformer: Literal["auto", "superjson", "json"] = "auto"
    owner_open_id: str | None = None
    app_id: str = Field(default="vision-pipeline", validation_alias="VITE_APP_ID")
    log_level: str = "info"

    @property
    def local_mode(self) -> bool:
        """No JWT_SECRET: every request acts as one local user (laptop use, docs' curl)."""
        return not self.jwt_secret
