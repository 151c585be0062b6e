"""Rows as the store reads them, mapped to ``storage.records`` (the same for both drivers)."""

from __future__ import annotations

from datetime import datetime

from storage.driver import Row
from storage.jobstate import JobStatus
from storage.records import ClaimedJob, UserRecord
from storage.timeutil import as_datetime


def timestamp(value: object) -> datetime:
    """A stored timestamp that cannot be NULL, as an aware UTC datetime."""
    parsed = as_datetime(value)
    assert parsed is not None
    return parsed


def user_of(row: Row) -> UserRecord:
    return UserRecord(
        id=row["id"],
        open_id=row["openId"],
        name=row["name"],
        email=row["email"],
        login_method=row["loginMethod"],
        role=row["role"],
        created_at=timestamp(row["createdAt"]),
        updated_at=timestamp(row["updatedAt"]),
        last_signed_in=timestamp(row["lastSignedIn"]),
        daily_budget_usd=row["dailyBudgetUsd"],
    )


def claimed_job(row: Row, worker_id: str) -> ClaimedJob:
    return ClaimedJob(
        id=row["id"],
        user_id=row["userId"],
        image_url=row["imageUrl"],
        image_context=row["imageContext"],
        analysis_purpose=row["analysisPurpose"],
        output_format=row["outputFormat"],
        creativity_level=float(row["creativityLevel"]),
        additional_instructions=row["additionalInstructions"],
        stage=JobStatus(row["status"]),
        gemin_output=row["geminOutput"],
        retry_count=row["retryCount"],
        max_retries=row["maxRetries"],
        attempt=row["attempt"],
        worker_id=worker_id,
        locked_at=timestamp(row["lockedAt"]),
        bypass_cache=bool(row["bypassCache"]),
    )
