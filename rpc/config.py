"""All settings of the server: the pipeline's plus the HTTP side's (SEED_API §6)."""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field

from pipeline.config import PipelineSettings


class Settings(PipelineSettings):
    jwt_secret: str | None = None
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # "auto": answer superjson to superjson clients, plain JSON to others (per request).
    trpc_transformer: Literal["auto", "superjson", "json"] = "auto"
    owner_open_id: str | None = None
    # The template's VITE_APP_ID (also read as APP_ID): OAuth clientId, GetUserInfoWithJwt
    # projectId and the session JWT's appId claim (TEMPLATE_FLOWS §1.4, §1.5, §1.8).
    app_id: str = Field(
        default="vision-pipeline", validation_alias=AliasChoices("VITE_APP_ID", "APP_ID")
    )
    # Replacing the template's Node server (TEMPLATE_FLOWS §1.8, §3.1): the OAuth server of
    # /api/oauth/callback, the notification service of system.notifyOwner, the built frontend.
    oauth_server_url: str | None = None
    built_in_forge_api_url: str | None = None
    built_in_forge_api_key: str | None = None
    static_dir: str | None = None
    # Timeout of each call to those services (the template's axios uses 30 s, §1.4).
    platform_timeout_seconds: float = Field(default=30.0, gt=0)
    log_level: str = "info"

    # Hostile input (rpc.dispatch): a batch of more calls is refused, as is a longer URL
    # (path + query; Node's own header limit is 16 KiB, so nothing the template accepts is).
    max_batch_size: int = Field(default=50, ge=1)
    max_url_bytes: int = Field(default=16 * 1024, ge=1024)
    # Quotas on createJob (rpc.quotas); 0 turns a limit off.
    jobs_per_minute_per_user: int = Field(default=60, ge=0)
    max_waiting_jobs_per_user: int = Field(default=100, ge=0)
    max_waiting_jobs: int = Field(default=100_000, ge=0)
    # rpc.security: origins (comma-separated) a separate frontend is served from; empty: CORS
    # off (same-origin frontend). A Content-Security-Policy for STATIC_DIR's files (none if "").
    cors_allow_origins: str = ""
    static_content_security_policy: str = ""

    @property
    def local_mode(self) -> bool:
        """No JWT_SECRET: every request acts as one local user (laptop use, docs' curl)."""
        return not self.jwt_secret
