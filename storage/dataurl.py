"""``data:`` URLs: the one reading of their base64 payload, and what older versions stored.

``pipeline.images.decode_data_url`` reads a createJob's (and a worker's) data URL with these
and its own rules on top: an image media type, base64, the size cap. ``inline_image`` is the
lenient reading the conversion of stored rows needs (``storage.images``): any data URL whose
base64 decodes is kept, whatever it holds, since its job was accepted once.
"""

from __future__ import annotations

import base64
import hashlib
import re
import urllib.parse
from io import BytesIO

from PIL import Image as PILImage

from storage.records import NewImage

OCTET_STREAM = "application/octet-stream"
# A media type worth keeping from a data URL's header (an image type, nothing else).
_IMAGE_TYPE = re.compile(r"image/[a-z0-9][a-z0-9!#$&^_.+-]{0,100}")


def clean_payload(payload: str) -> str:
    """The payload as base64 text: percent-decoded, without the line breaks and spaces some
    encoders insert."""
    if "%" in payload:
        payload = urllib.parse.unquote(payload)
    return "".join(payload.split())


def decode_base64(payload: str) -> bytes:
    """Standard or URL-safe base64, padding optional. Raises ValueError when it is not."""
    altchars = b"-_" if ("-" in payload or "_" in payload) else None
    payload += "=" * (-len(payload) % 4)
    return base64.b64decode(payload, altchars=altchars, validate=True)  # binascii.Error


def inline_image(url: str) -> NewImage | None:
    """A stored ``data:`` URL as an image for the store, or None when its base64 (or the URL
    itself) does not decode. The MIME type is Pillow's when it recognises the bytes, else the
    header's when that is an image type, else application/octet-stream; width and height are
    Pillow's (None when it cannot read them). Only the header is read: no pixel is decoded."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        return None
    try:
        data = decode_base64(clean_payload(payload))
    except ValueError:
        return None
    if not data:
        return None
    mime_type, width, height = _described(data)
    if mime_type is None:
        declared = header.split(";", 1)[0].strip().lower()
        mime_type = declared if _IMAGE_TYPE.fullmatch(declared) else OCTET_STREAM
    return NewImage(hashlib.sha256(data).hexdigest(), mime_type, width, height, data)


def _described(data: bytes) -> tuple[str | None, int | None, int | None]:
    try:
        with PILImage.open(BytesIO(data)) as probe:
            mime_type = PILImage.MIME.get(probe.format or "")
            width, height = probe.size
    except Exception:  # not an image Pillow knows, or one it refuses (a bomb): keep the bytes
        return None, None, None
    return mime_type, width, height
