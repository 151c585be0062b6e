"""What a provider call cost in USD, from its token usage and the configured prices.

Prices are configuration (``GEMINI_PRICE_INPUT_PER_M`` …, USD per million tokens) because
they change monthly (PROVIDERS.md §4, §6); the offline providers cost nothing. Gemini's
input tokens include the image, and its output tokens include thinking (the provider already
adds ``thoughts_token_count`` to the output), so one input and one output price suffice.
"""

from __future__ import annotations

from typing import Protocol

from pipeline.config import PipelineSettings


class TokenUsage(Protocol):
    """Anything with token counts: ``providers.base.Usage`` or ``storage.records.StageUsage``."""

    @property
    def input_tokens(self) -> int: ...

    @property
    def output_tokens(self) -> int: ...


def prices(provider_kind: str, settings: PipelineSettings) -> tuple[float, float]:
    """(input, output) USD per million tokens for a provider kind; unknown kinds cost 0."""
    if provider_kind == "gemini":
        return settings.gemini_price_input_per_m, settings.gemini_price_output_per_m
    if provider_kind == "deepseek":
        return settings.deepseek_price_input_per_m, settings.deepseek_price_output_per_m
    return 0.0, 0.0  # "offline", test fakes


def stage_cost(provider_kind: str, usage: TokenUsage | None, settings: PipelineSettings) -> float:
    """USD for one stage's call: tokens × price / 1e6, rounded to 1e-8 (a hundredth of a
    micro-dollar) so sums stored as floats stay readable. ``provider_kind`` is the
    provider's ``name`` ("gemini", "deepseek", "offline"); a missing usage costs 0."""
    if usage is None:
        return 0.0
    price_in, price_out = prices(provider_kind, settings)
    cost = (max(usage.input_tokens, 0) * price_in + max(usage.output_tokens, 0) * price_out) / 1e6
    return round(cost, 8)
