"""All settings of the server: the pipeline's plus the HTTP side's (SEED_API §6)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, ValidationError, model_validator

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
    # The login portal of the built-in page's "sign in" link (the template's
    # VITE_OAUTH_PORTAL_URL, TEMPLATE_FLOWS §1.2); OAUTH_SERVER_URL when not set.
    oauth_portal_url: str | None = Field(
        default=None, validation_alias=AliasChoices("OAUTH_PORTAL_URL", "VITE_OAUTH_PORTAL_URL")
    )
    # Timeout of each call to those services (the template's axios uses 30 s, §1.4).
    platform_timeout_seconds: float = Field(default=30.0, gt=0)
    # A level name in any case; "debug" also shows the traceback behind a one-line error.
    log_level: Annotated[
        Literal["debug", "info", "warning", "error", "critical"],
        BeforeValidator(lambda v: v.lower() if isinstance(v, str) else v),
    ] = "info"

    # Hostile input (rpc.wire.dispatch): a batch of more calls is refused, as is a longer URL
    # (path + query; Node's own header limit is 16 KiB, so nothing the template accepts is).
    max_batch_size: int = Field(default=50, ge=1)
    max_url_bytes: int = Field(default=16 * 1024, ge=1024)
    # Quotas on createJob (rpc.procedures.quotas); 0 turns a limit off.
    jobs_per_minute_per_user: int = Field(default=60, ge=0)
    max_waiting_jobs_per_user: int = Field(default=100, ge=0)
    max_waiting_jobs: int = Field(default=100_000, ge=0)
    # A user's daily spending budget in USD (rpc.procedures.budgets): createJob refuses with
    # PAYMENT_REQUIRED once their attempts' cost today (UTC) reached it. 0: none; admins
    # have none; `users set-budget` sets a user's own.
    user_daily_budget_usd: float = Field(default=0.0, ge=0)
    # Limits on uploadImage (rpc.procedures.upload_quotas); 0 turns a limit off. Uploads per
    # user per minute (counted per API process), and the megabytes of stored images a user
    # may hold (images their jobs use included).
    uploads_per_minute_per_user: int = Field(default=60, ge=0)
    max_stored_images_mb_per_user: float = Field(default=500, ge=0)
    # rpc.security: origins (comma-separated) a separate frontend is served from; empty: CORS
    # off (same-origin frontend). A Content-Security-Policy for STATIC_DIR's files (none if "").
    cors_allow_origins: str = ""
    static_content_security_policy: str = ""

    # Live progress (rpc.wire.sse, rpc.procedures.progress). Keep-alive `ping` after this long
    # without an event; 0: never (tRPC's sse.ping).
    sse_ping_ms: int = Field(default=10_000, ge=0)
    # Sent in `connected` (tRPC's sse.client.reconnectAfterInactivityMs): the client re-opens
    # a stream silent for this long (§7.4). 0: not sent. Must exceed the ping interval.
    sse_reconnect_after_inactivity_ms: int = Field(default=30_000, ge=0)
    # End each stream after this long without `return` (tRPC's sse.maxDurationMs); the client
    # reconnects and resumes. 0: no limit.
    sse_max_duration_ms: int = Field(default=0, ge=0)
    # A `retry:` field with `connected` (the EventSource's reconnect delay). 0: not sent.
    sse_retry_ms: int = Field(default=0, ge=0)
    # Events buffered per subscriber before it falls back to re-reading the table.
    sse_queue_limit: int = Field(default=256, ge=1)

    # Operating it (rpc.logs, rpc.observe, rpc.probes): "json" writes every log line (uvicorn's
    # too) as one JSON object; one access-log line per HTTP request unless ACCESS_LOG=false;
    # with METRICS_TOKEN set, /metrics answers only "Authorization: Bearer <token>".
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True
    metrics_token: str | None = None

    @model_validator(mode="after")
    def _ping_before_inactivity(self) -> Settings:
        inactivity, ping = self.sse_reconnect_after_inactivity_ms, self.sse_ping_ms
        if inactivity and ping and ping >= inactivity:
            raise ValueError(
                f"SSE_PING_MS ({ping}) must be less than SSE_RECONNECT_AFTER_INACTIVITY_MS "
                f"({inactivity}), or clients reconnect while idle"
            )
        return self

    @property
    def local_mode(self) -> bool:
        """No JWT_SECRET: every request acts as one local user (laptop use, docs' curl)."""
        return not self.jwt_secret


# Settings whose value is never echoed back in an error (a secret has no business in a log).
_SECRET_WORDS = ("secret", "key", "password", "token")


def settings_problem(exc: ValidationError) -> str:
    """A settings failure as one line naming each variable and what is wrong with it, e.g.
    ``WORKER_CONCURRENCY='abc': should be a valid integer``."""
    problems = []
    for error in exc.errors():
        message = str(error["msg"]).removeprefix("Value error, ")
        if message[1:2].islower():  # pydantic's "Input should …", not a variable's NAME
            message = message[0].lower() + message[1:]
        if not error["loc"]:  # a check across settings names its variables itself
            problems.append(message)
            continue
        name = str(error["loc"][0]).upper()
        shown = "" if any(w in name.lower() for w in _SECRET_WORDS) else f"={error['input']!r}"
        problems.append(f"{name}{shown}: {message.removeprefix('input ')}")
    return "bad configuration: " + "; ".join(problems)
