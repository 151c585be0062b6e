"""The image store: images kept once per (user, SHA-256) in ``visionImages``, jobs that refer to
them as ``/api/images/<sha256>``, and the conversion of the whole data: URLs older versions kept
in ``visionJobs.imageUrl``.

An image lives as long as a job of its user refers to it: the deletion trigger
(``storage.triggers``) removes it with the last one. An uploaded image (``keep_upload``) no job
uses yet lives until the housekeeping's ``prune_unused_images`` (``storage.retention``) finds it
older than UPLOAD_RETENTION_HOURS; an upload of an image the user has starts that time again.
A job and the image it refers to are written in one transaction, with the image held
(``hold_image``) until it commits, so a concurrent deletion of the user's last other job (or
the housekeeping) cannot take the image away in between.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

from storage import batches
from storage.coalesce import Coalescer
from storage.dataurl import inline_image
from storage.driver import Driver, Row, Work, execute, fetch_one
from storage.queries import QUERIES
from storage.records import ConvertedJob, NewImage, NewJob, StoredImage
from storage.timeutil import utcnow

T = TypeVar("T")
log = logging.getLogger("storage.images")

IMAGE_PATH = "/api/images/"
# What a converted job whose data: URL did not decode refers to: no image has this name, so
# its worker fails it at once ("not valid base64"), and no answer carries the text.
INVALID_IMAGE_URL = IMAGE_PATH + "invalid"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def image_path(sha256: str) -> str:
    return IMAGE_PATH + sha256


def is_image_path(url: str) -> bool:
    """Whether an imageUrl names the image store (a stored image, or the invalid marker)."""
    return url.startswith(IMAGE_PATH)


def image_sha(url: str) -> str | None:
    """The SHA-256 an imageUrl ``/api/images/<64 lowercase hex>`` names, else None."""
    if not url.startswith(IMAGE_PATH):
        return None
    sha = url[len(IMAGE_PATH) :]
    return sha if _SHA256.fullmatch(sha) else None


def _stored(row: Row) -> StoredImage:
    return StoredImage(row["userId"], row["sha256"], row["mimeType"], int(row["byteSize"]),
                       row["width"], row["height"], row["data"])  # fmt: skip


def keep_image(user_id: int, image: NewImage) -> Work[bool]:
    """Part of a transaction: make sure ``user_id`` has ``image`` and hold it (on PostgreSQL,
    FOR SHARE) until the transaction ends. True when the row is new. The bytes are sent only
    when the user does not have the image yet. Should a deletion take the image between the
    insert and the hold (its trigger locked it first), it is stored again."""
    held = yield fetch_one(QUERIES["hold_image"], user_id, image.sha256)
    inserted = False
    for _ in range(5):
        if held is not None:
            return inserted
        inserted = bool((yield execute(
            QUERIES["insert_image"], user_id, image.sha256, image.mime_type, len(image.data),
            image.width, image.height, image.data, utcnow(),
        )))  # fmt: skip
        held = yield fetch_one(QUERIES["hold_image"], user_id, image.sha256)
    raise RuntimeError(f"image {image.sha256} of user {user_id} kept vanishing while stored")


@dataclass(frozen=True, slots=True)
class KeptUpload:
    """What ``keep_upload`` did: ``kept`` False when storing the image would take the user's
    stored images past the limit (nothing was written); ``stored_bytes``: their bytes before."""

    kept: bool
    stored_bytes: int


def keep_upload(user_id: int, image: NewImage, max_stored_bytes: int) -> Work[KeptUpload]:
    """An uploaded image in the user's store, in one transaction: refused when it is new to
    them and their stored images would then hold more than ``max_stored_bytes`` (0: no
    limit); an image they have gets a fresh createdAt instead (no bytes sent again)."""
    row = yield fetch_one(QUERIES["stored_image_bytes"], user_id, image.sha256)
    stored, has = int(row["total"]), bool(row["has"])
    now = utcnow()
    if has and (yield execute(QUERIES["touch_image"], user_id, image.sha256, now)):
        return KeptUpload(True, stored)
    if max_stored_bytes and stored + len(image.data) > max_stored_bytes:
        return KeptUpload(False, stored)
    inserted = yield execute(
        QUERIES["insert_image"], user_id, image.sha256, image.mime_type, len(image.data),
        image.width, image.height, image.data, now,
    )  # fmt: skip
    if not inserted:  # a concurrent upload of the same image stored it first
        yield execute(QUERIES["touch_image"], user_id, image.sha256, now)
    return KeptUpload(True, stored)


# A createJob that refers to the image store: its job, and the inline image it brought or
# the SHA-256 of the caller's stored image it names.
ImageJob = tuple[NewJob, NewImage | str]


def image_jobs(items: list[ImageJob]) -> Work[list[int | None]]:
    """The createJob calls of one moment that refer to the image store, in one transaction:
    each distinct (user, image) kept and held once (sorted, so two batches lock images in the
    same order), then every job in one INSERT. Per item, its job id, or None when it names a
    stored image its user does not have (nothing is written for it)."""
    inline: dict[tuple[int, str], NewImage] = {}
    named: set[tuple[int, str]] = set()
    for job, image in items:
        if isinstance(image, NewImage):
            inline.setdefault((job.user_id, image.sha256), image)
        else:
            named.add((job.user_id, image))
    for (user_id, _), image in sorted(inline.items(), key=lambda kv: kv[0]):
        yield from keep_image(user_id, image)
    missing = set()
    for key in sorted(named - inline.keys()):
        if (yield fetch_one(QUERIES["hold_image"], *key)) is None:
            missing.add(key)
    jobs = [
        replace(job, image_url=image_path(image if isinstance(image, str) else image.sha256))
        for job, image in items
        if isinstance(image, NewImage) or (job.user_id, image) not in missing
    ]
    ids = iter(batches.job_ids(jobs, (yield batches.insert_jobs(jobs))) if jobs else ())
    return [
        None if isinstance(image, str) and (job.user_id, image) in missing else next(ids)
        for job, image in items
    ]


class ImageStore:
    """``JobStore``'s methods for the image store (a base class of it: one store for callers)."""

    driver: Driver
    # createJob calls of the same moment that refer to the image store share a transaction.
    _image_creates: Coalescer[ImageJob, int | None]

    async def _write(self, work: Callable[[], Work[T]]) -> T:
        raise NotImplementedError  # JobStore's

    def _jobs_committed(self, created: bool) -> None:
        raise NotImplementedError  # JobStore's

    async def _yield_to_claim(self) -> None:
        raise NotImplementedError  # JobStore's

    async def _image_batch(self, items: list[ImageJob]) -> list[int | None]:
        ids = await self.driver.run(lambda: image_jobs(items))
        self._jobs_committed(any(job_id is not None for job_id in ids))
        return ids

    async def create_job_with_image(self, job: NewJob, image: NewImage) -> int:
        """createJob with an inline image: the image (the user's existing row when they have
        it) and the job referring to it, in one transaction (shared with the calls of the
        same moment)."""
        job_id = await self._image_creates.submit((job, image))
        assert job_id is not None  # an inline image is always kept
        await self._yield_to_claim()
        return job_id

    async def create_job_with_stored_image(self, job: NewJob, sha256: str) -> int | None:
        """createJob naming one of the user's stored images; None when they have no such
        image (whoever else may have it)."""
        job_id = await self._image_creates.submit((job, sha256))
        if job_id is not None:
            await self._yield_to_claim()
        return job_id

    async def keep_upload(
        self, user_id: int, image: NewImage, *, max_stored_bytes: int = 0
    ) -> KeptUpload:
        """uploadImage's write: see the function ``keep_upload``."""
        return await self._write(lambda: keep_upload(user_id, image, max_stored_bytes))

    async def get_image(
        self, user_id: int | None, sha256: str, *, with_data: bool = True
    ) -> StoredImage | None:
        """User ``user_id``'s image ``sha256`` (None: whichever user's, for an admin)."""
        if user_id is None:
            query = QUERIES["get_any_image"] if with_data else QUERIES["get_any_image_info"]
            row = await self.driver.read(fetch_one(query, sha256))
        else:
            query = QUERIES["get_image"] if with_data else QUERIES["get_image_info"]
            row = await self.driver.read(fetch_one(query, user_id, sha256))
        return None if row is None else _stored(row)

    async def convert_inline_image(self, after: int) -> ConvertedJob | None:
        """Convert the next job after id ``after`` that still holds a data: URL (see
        ``convert_inline_images``), in a transaction of its own; None when none is left."""

        def work() -> Work[ConvertedJob | None]:
            row = yield fetch_one(QUERIES["next_inline_image_job"], after)
            if row is None:
                return None
            job_id, user_id = int(row["id"]), int(row["userId"])
            image = inline_image(row["imageUrl"])
            if image is None:
                yield execute(QUERIES["set_inline_image_url"], job_id, INVALID_IMAGE_URL)
                return ConvertedJob(job_id, image_stored=False, new_image=False)
            new = yield from keep_image(user_id, image)
            yield execute(QUERIES["set_inline_image_url"], job_id, image_path(image.sha256))
            return ConvertedJob(job_id, image_stored=True, new_image=new)

        return await self._write(work)


@dataclass(frozen=True, slots=True)
class Conversion:
    jobs: int = 0  # jobs whose imageUrl was a data: URL
    images: int = 0  # images stored (a user's repeated image is stored once)
    invalid: int = 0  # jobs whose data: URL did not decode (now INVALID_IMAGE_URL)


async def convert_inline_images(store: ImageStore) -> Conversion:
    """Replace every job's whole data: URL by its stored image's path, one job per
    transaction (at most one image in memory, no transaction holding two images, so
    converters never deadlock each other), oldest job first. Idempotent: a converted job no
    longer matches; safe with many processes at once (SQLite: one writer at a time;
    PostgreSQL: each job locked, the others skip it). A job a peer is converting is left to
    that peer."""
    jobs = images = invalid = 0
    after = 0
    while (converted := await store.convert_inline_image(after)) is not None:
        after = converted.job_id
        jobs += 1
        images += converted.new_image
        invalid += not converted.image_stored
    if jobs:
        log.info("converted the data: URLs of %d jobs into %d stored images (%d not valid "
                 "base64)", jobs, images, invalid)  # fmt: skip
    return Conversion(jobs, images, invalid)
