"""``visionPipeline.uploadImage``: an image sent as ``multipart/form-data`` (field ``file``) or
``application/octet-stream`` (``rpc.wire.nonjson`` reads the request), kept in the caller's
image store (``storage.images``), answered with the ``imageUrl`` a createJob then names.

The order, cheapest refusal first: the caller (guard ``user``); the per-minute limit, before
a byte of the body is read; the body, streamed within IMAGE_MAX_BYTES (413); Pillow's whole
check of the file, in a thread, with the worker's pixel cap and messages (400: not a JPEG,
PNG, WEBP or GIF, damaged, too many pixels); then, one upload of the user at a time, the
stored-bytes limit and the write in one transaction (429 when over). An upload of an image
the user has already stores nothing new and starts its retention time again.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import anyio.to_thread

from pipeline.errors import ImageError
from pipeline.fetching import format_size
from pipeline.stored_images import uploaded_image
from rpc.context import Context
from rpc.procedures.upload_quotas import MB, too_much_stored
from rpc.wire.errors import TRPCError
from rpc.wire.nonjson import BinaryInput
from storage.images import image_path


async def upload_image(ctx: Context, body: BinaryInput) -> dict[str, Any]:
    """``visionPipeline.uploadImage`` -> ``{imageUrl, sha256, bytes, mimeType, width,
    height}``."""
    services = ctx.services
    settings = services.settings
    caller = await ctx.caller()
    assert caller is not None  # guard "user"
    services.uploads.count(caller.user_id, settings.uploads_per_minute_per_user)
    limit = settings.image_max_bytes
    data = await body.read(limit, f"Image is larger than the {format_size(limit)} limit")
    check = partial(uploaded_image, data, max_pixels=settings.image_max_pixels)
    try:
        image = await anyio.to_thread.run_sync(check)
    except ImageError as exc:
        raise TRPCError("BAD_REQUEST", exc.message) from None
    limit_mb = settings.max_stored_images_mb_per_user
    async with services.uploads.admitted(caller.user_id):
        kept = await services.store.keep_upload(
            caller.user_id, image, max_stored_bytes=int(limit_mb * MB)
        )
    if not kept.kept:
        raise too_much_stored(limit_mb, kept.stored_bytes)
    return {
        "imageUrl": image_path(image.sha256),
        "sha256": image.sha256,
        "bytes": len(image.data),
        "mimeType": image.mime_type,
        "width": image.width,
        "height": image.height,
    }
