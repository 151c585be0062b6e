"""The inputs of the ``visionPipeline`` job procedures, validated before a procedure runs
(a refusal is BAD_REQUEST with pydantic's issues). Their own module so that the helpers of
``rpc.procedures.jobs`` (idempotency's fingerprint) can name them without importing it back."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from pipeline.errors import ImageError
from pipeline.images import data_url_payload
from storage.images import image_sha, is_image_path


class CreateJobInput(BaseModel):
    model_config = ConfigDict(extra="ignore")

    imageUrl: str = Field(min_length=1)
    imageContext: str | None = Field(default=None, max_length=10_000)
    analysisPurpose: str = Field(min_length=1, max_length=10_000)
    outputFormat: Literal["bullet_points", "detailed_analysis", "social_media_post"]
    creativityLevel: float = Field(default=1.0, ge=0, le=2)
    additionalInstructions: str | None = Field(default=None, max_length=10_000)
    # false: fresh answers from the providers, whatever the result cache holds (strict: a
    # string "false" is refused rather than taken for true).
    cache: StrictBool = True
    # The same key and inputs within 24 hours: the same job (rpc.procedures.idempotency).
    idempotencyKey: str | None = Field(default=None, min_length=1, max_length=200)

    @field_validator("imageUrl")
    @classmethod
    def _image_url(cls, value: str) -> str:
        value = value.strip()
        if is_image_path(value):  # one of the caller's stored images: no URL rule applies
            if image_sha(value) is None:
                raise ValueError("Invalid image path: expected /api/images/<sha256, 64 hex>")
            return value
        if value[:5].lower() == "data:":  # the worker's rule (decoded in `create_job`)
            try:
                data_url_payload(value)
            except ImageError as exc:
                raise ValueError(exc.message) from None
            return value
        parts = urlsplit(value)
        if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
            raise ValueError("Invalid URL: expected an http(s) URL or a data:image/… URL")
        if len(value) > 8192:
            raise ValueError("Invalid URL: longer than 8192 characters")
        return value


# Ids and offsets beyond a 64-bit integer cannot exist; refusing them here keeps them from
# reaching the driver (SQLite raises OverflowError on them).
_INT64 = 2**63 - 1


class JobIdInput(BaseModel):
    jobId: int = Field(ge=-_INT64, le=_INT64)


class HistoryInput(BaseModel):
    limit: int = Field(default=20, ge=1, le=100)
    offset: int = Field(default=0, ge=0, le=_INT64)
