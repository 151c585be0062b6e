"""Assemble the pipeline from settings: providers, stages, worker."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import partial

from pipeline.cache import StageCache
from pipeline.config import PipelineSettings
from pipeline.decoding import DecodeBudget, ImageDecoder
from pipeline.images import load_image
from pipeline.providers.base import ContentProvider, VisionProvider
from pipeline.providers.offline import OfflineContent, OfflineVision
from pipeline.ratelimit import limit_content, limit_vision
from pipeline.stages import Stages
from pipeline.stored_images import StoredImageLoader
from pipeline.streaming import PartialWriter
from pipeline.worker import Worker
from storage.records import ClaimedJob
from storage.store import JobStore

log = logging.getLogger("pipeline")


def build_providers(settings: PipelineSettings) -> tuple[VisionProvider, ContentProvider]:
    """PROVIDERS=auto: a provider whose key is set is real, the other offline; =offline: both
    offline whatever keys are set. Logs which provider each stage uses (never a key). A real
    provider sits behind its *_REQUESTS_PER_MINUTE limiter when that is set."""
    # The process's one decode budget: the offline vision provider is what decodes pixels.
    budget = DecodeBudget(settings.image_decode_memory_mb << 20)
    vision: VisionProvider = OfflineVision(ImageDecoder(budget, settings.image_max_pixels))
    content: ContentProvider = OfflineContent()
    if settings.providers == "auto":
        # Imported here: the SDKs load only when a key says they will be used.
        if settings.gemini_api_key:
            from pipeline.providers.gemini import GeminiVision

            vision = limit_vision(GeminiVision(settings), settings.gemini_requests_per_minute)
        if settings.deepseek_api_key:
            from pipeline.providers.deepseek import DeepSeekContent

            content = limit_content(
                DeepSeekContent(settings), settings.deepseek_requests_per_minute
            )
    log.info(
        "providers: vision=%s%s, content=%s%s (PROVIDERS=%s)",
        vision.name, f" ({settings.gemini_model})" if vision.name == "gemini" else "",
        content.name, f" ({settings.deepseek_model})" if content.name == "deepseek" else "",
        settings.providers,
    )  # fmt: skip
    return vision, content


def build_stages(settings: PipelineSettings, store: JobStore | None = None) -> Stages:
    """The stages with the real image loaders: URLs and data: URLs by ``load_image``, a
    job's ``/api/images/…`` from ``store``'s image store (without a store, only the former),
    and the result cache over ``store`` (CACHE_TTL_HOURS, CACHE_SCOPE; none without one)."""
    vision, content = build_providers(settings)
    loader = partial(
        load_image,
        max_bytes=settings.image_max_bytes,
        allow_private=settings.image_fetch_allow_private,
        allowed_ports=settings.image_ports(),
        max_pixels=settings.image_max_pixels,
        timeout=settings.image_fetch_timeout_seconds,
    )
    stored = (
        None if store is None else StoredImageLoader(store, max_pixels=settings.image_max_pixels)
    )
    cache = (
        None
        if store is None
        else StageCache(store.cached_answer, settings.cache_ttl_hours, settings.cache_scope)
    )
    stages = Stages(vision, content, loader, settings.stage_timeout_seconds, stored, cache)
    if store is not None and settings.partial_content_ms > 0:
        # The content stage's answer so far, written to the job's row as it streams.
        interval = settings.partial_content_ms / 1000

        def writer_for(job: ClaimedJob) -> PartialWriter:
            return PartialWriter(partial(store.store_partial_content, job), interval)

        stages = replace(stages, partial=writer_for)
    return stages


def build_worker(store: JobStore, settings: PipelineSettings) -> Worker:
    return Worker(store, build_stages(settings, store), settings)
