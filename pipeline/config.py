"""Settings of the storage and pipeline layers, from the environment (and a ``.env`` file).

The names are the contract's (SEED_API §6); ``rpc.config.Settings`` adds the server's own.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.urls import DEFAULT_URL


class PipelineSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = DEFAULT_URL
    database_pool_size: int = Field(default=0, ge=0)  # 0: sized from WORKER_CONCURRENCY

    worker_concurrency: int = Field(default=16, ge=1, le=1024)
    max_retries: int = Field(default=3, ge=1, le=100)
    retry_delay_ms: int = Field(default=5000, ge=0)
    poll_interval_ms: int = Field(default=1000, ge=10)
    lease_seconds: float = Field(default=30.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    stage_timeout_seconds: float = Field(default=120.0, gt=0)

    image_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1)
    image_max_pixels: int = Field(default=40_000_000, ge=1)
    # Memory the image decodes in flight may hold together, counted from what each image
    # declares in its header (pipeline.decoding); one larger than this runs alone.
    image_decode_memory_mb: int = Field(default=256, gt=0)
    # SSRF (PROVIDERS.md §5.1): on, the fetcher may reach loopback/private/link-local
    # addresses and any port (tests, trusted networks only).
    image_fetch_allow_private: bool = False
    # Comma-separated ports image URLs may use; empty: any (ignored with ALLOW_PRIVATE).
    image_fetch_allowed_ports: str = Field(default="80,443", pattern=r"^[0-9, ]*$")
    image_fetch_timeout_seconds: float = Field(default=15.0, gt=0)
    # Provider calls per minute, per worker process (pipeline.ratelimit); 0: no limit.
    gemini_requests_per_minute: float = Field(default=0, ge=0)
    deepseek_requests_per_minute: float = Field(default=0, ge=0)

    providers: Literal["auto", "offline"] = "auto"
    gemini_api_key: str | None = None
    gemini_base_url: str | None = None
    gemini_model: str = "gemini-3.8-flash"
    deepseek_api_key: str | None = None
    deepseek_base_url: str = "https://api.deepseek.com"
    deepseek_model: str = "deepseek-v4-flash"

    # Real providers (pipeline.providers.gemini / .deepseek). The SDK timeout bounds one HTTP
    # read; the whole stage is bounded by STAGE_TIMEOUT_SECONDS (PROVIDERS.md §0.5).
    provider_timeout_seconds: float = Field(default=60.0, gt=0)
    gemini_send_temperature: bool = False  # deprecated for Gemini 3.6+ (PROVIDERS.md §1.8)
    gemini_thinking_level: str = "low"  # "" sends none: the model's default (MEDIUM on 3.8)
    gemini_max_output_tokens: int = Field(default=8192, ge=256)
    deepseek_max_tokens: int = Field(default=4096, ge=256)
    # The content stage's answer so far is written to the job's row (and so travels as job
    # events) at most this often, the first piece at once (pipeline.streaming); 0: not at all.
    partial_content_ms: int = Field(default=100, ge=0)

    # USD per million tokens (PROVIDERS.md §4); offline providers cost nothing.
    gemini_price_input_per_m: float = Field(default=0.75, ge=0)
    gemini_price_output_per_m: float = Field(default=3.75, ge=0)
    deepseek_price_input_per_m: float = Field(default=0.30, ge=0)
    deepseek_price_output_per_m: float = Field(default=1.20, ge=0)

    # Retention (pipeline.retention). Finished jobs and their outputs are the training data:
    # kept unless RETENTION_DAYS > 0 (days since the job finished). Events of finished jobs
    # only serve live-progress resumes: pruned after EVENT_RETENTION_HOURS (0: kept).
    retention_days: int = Field(default=0, ge=0)
    event_retention_hours: float = Field(default=24, ge=0)
    # Uploaded images (uploadImage) that no job uses are deleted this long after their upload
    # (0: kept until their user's last job goes, as every other stored image).
    upload_retention_hours: float = Field(default=24, ge=0)
    # How often the workers' housekeeping runs (one process at a time does it).
    retention_interval_seconds: float = Field(default=300, gt=0)
    # The result cache (pipeline.cache): a stage's answer stored less than this many hours ago
    # is reused by a job with the same key instead of calling the provider (0: off); only
    # the same user's answers, unless CACHE_SCOPE=global.
    cache_ttl_hours: float = Field(default=168, ge=0, le=876_000)  # 100 years at most
    cache_scope: Literal["user", "global"] = "user"
    # serve and worker upgrade an older schema at start (storage.migrate); false: they refuse
    # it instead, for fleets that run `vision-pipeline db upgrade` as a step of their own.
    migrate_on_start: bool = True

    def image_ports(self) -> frozenset[int] | None:
        """IMAGE_FETCH_ALLOWED_PORTS as a set; None (any port) when empty or private is on."""
        ports = frozenset(
            int(p) for p in self.image_fetch_allowed_ports.replace(" ", "").split(",") if p
        )
        return None if self.image_fetch_allow_private or not ports else ports

    def pool_size(self) -> int:
        return self.database_pool_size or min(self.worker_concurrency + 4, 40)
