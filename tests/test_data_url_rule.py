"""One rule for data URLs (issue 14 item 4): createJob's input validation refuses a data URL
by the worker's own rule (``pipeline.images``), with the worker's message, and accepts every
header the worker accepts."""

from __future__ import annotations

import base64

import pytest
from pydantic import ValidationError

from pipeline.errors import ImageError
from pipeline.images import decode_data_url
from rpc.procedures.job_inputs import CreateJobInput
from rpc.wire.validation import issues
from tests.support import png_bytes

PNG = base64.b64encode(png_bytes((10, 200, 30))).decode()


def create_input(url: str) -> CreateJobInput:
    return CreateJobInput.model_validate(
        {"imageUrl": url, "analysisPurpose": "p", "outputFormat": "bullet_points"}, strict=True
    )


@pytest.mark.parametrize(
    "url",
    [
        "data:text/plain;base64," + PNG,
        "data:;base64," + PNG,
        "data:image/png," + PNG,
        "data:image/png;base64",
        "DATA:application/json;base64,e30=",
    ],
)
def test_a_refused_header_gets_the_workers_message(url: str) -> None:
    with pytest.raises(ImageError) as worker:
        decode_data_url(url, 10 * 1024 * 1024)
    with pytest.raises(ValidationError) as api:
        create_input(url)
    assert issues(api.value) == [
        {"code": "custom", "path": ["imageUrl"], "message": worker.value.message}
    ]


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64," + PNG,
        "data:image/png;base64;name=logo.png," + PNG,  # base64 need not be the last parameter
        "data: image/png ; base64," + PNG,  # spaces around the parts
        "data:IMAGE/PNG;BASE64," + PNG,
    ],
)
def test_a_header_the_worker_accepts_is_accepted(url: str) -> None:
    assert decode_data_url(url, 10 * 1024 * 1024) == base64.b64decode(PNG)
    assert create_input(url).imageUrl == url
