"""createJob's ``idempotencyKey`` (issue 17).

The same user sending the same key with the same inputs within 24 hours gets the job the
first call made (its id and current status, message "Job already created"); with other
inputs, ``CONFLICT`` (409). The inputs are compared by their fingerprint, the SHA-256 of
their canonical JSON (an inline image by its SHA-256, as the job refers to it), kept on the
job. One job per (user, key) whatever the timing, also across API processes: the database's
unique index decides (``storage.budgets``). A key is kept 24 hours
(``storage.budgets.KEY_TTL``), then cleared by the housekeeping and free again.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from rpc.wire.errors import TRPCError
from storage.images import image_path

if TYPE_CHECKING:
    from rpc.procedures.job_inputs import CreateJobInput
    from storage.budgets import KeyedJob
    from storage.records import NewImage

EXISTING_MESSAGE = "Job already created"
CONFLICT_MESSAGE = "idempotencyKey was used with different inputs"


def fingerprint(data: CreateJobInput, image: NewImage | None) -> str:
    """The SHA-256 (hex) of a createJob's inputs, the key aside."""
    url = image_path(image.sha256) if image is not None else data.imageUrl
    inputs = [
        url, data.imageContext, data.analysisPurpose, data.outputFormat,
        float(data.creativityLevel), data.additionalInstructions,
    ]  # fmt: skip
    canonical = json.dumps(inputs, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def answer(job: KeyedJob, wanted: str) -> dict[str, Any]:
    """The answer to a key its user holds: the job, or CONFLICT if made with other inputs."""
    if job.fingerprint != wanted:
        raise TRPCError("CONFLICT", CONFLICT_MESSAGE)
    return {"jobId": job.id, "status": job.status, "message": EXISTING_MESSAGE}
