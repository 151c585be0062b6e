"""The template's owner notification helper, ``notifyOwner`` (TEMPLATE_FLOWS §3.1).

What this module promises:

- ``validate_payload`` trims title and content and rejects, with ``BAD_REQUEST`` and the
  template's messages, an empty one, a title over 1200 characters or content over 20000.
- ``notify_owner`` POSTs ``{"title","content"}`` to
  ``{BUILT_IN_FORGE_API_URL}/webdevtoken.v1.WebDevService/SendNotification`` with the
  template's Connect headers (bearer ``BUILT_IN_FORGE_API_KEY``, ``connect-protocol-version:
  1``) and answers True on a 2xx. It never raises for the service: a non-2xx, an unreachable
  service or missing settings (where the template throws) answer False and are logged, never
  with the key.
"""

from __future__ import annotations

import logging
from urllib.parse import urljoin

import httpx

from rpc.config import Settings
from rpc.wire.errors import TRPCError

log = logging.getLogger("rpc.notify")

TITLE_MAX_LENGTH = 1200
CONTENT_MAX_LENGTH = 20000
SEND_NOTIFICATION_PATH = "webdevtoken.v1.WebDevService/SendNotification"


def validate_payload(title: str, content: str) -> tuple[str, str]:
    """The trimmed (title, content), or BAD_REQUEST as the template words it."""
    title, content = title.strip(), content.strip()
    if not title:
        raise TRPCError("BAD_REQUEST", "Notification title is required.")
    if not content:
        raise TRPCError("BAD_REQUEST", "Notification content is required.")
    if len(title) > TITLE_MAX_LENGTH:
        raise TRPCError(
            "BAD_REQUEST", f"Notification title must be at most {TITLE_MAX_LENGTH} characters."
        )
    if len(content) > CONTENT_MAX_LENGTH:
        raise TRPCError(
            "BAD_REQUEST",
            f"Notification content must be at most {CONTENT_MAX_LENGTH} characters.",
        )
    return title, content


def endpoint_url(base_url: str) -> str:
    """``new URL(path, base + "/")`` as the template builds it: the base's path is kept."""
    return urljoin(base_url if base_url.endswith("/") else base_url + "/", SEND_NOTIFICATION_PATH)


async def notify_owner(settings: Settings, title: str, content: str) -> bool:
    """Send the owner a notification; True when the service accepted it."""
    title, content = validate_payload(title, content)
    url, key = settings.built_in_forge_api_url, settings.built_in_forge_api_key
    if not url or not key:
        log.warning(
            "notifyOwner: not sent, BUILT_IN_FORGE_API_URL and BUILT_IN_FORGE_API_KEY must "
            "both be set (title: %r)",
            title[:80],
        )
        return False
    headers = {
        "accept": "application/json",
        "authorization": f"Bearer {key}",
        "content-type": "application/json",
        "connect-protocol-version": "1",
    }
    try:
        async with httpx.AsyncClient(timeout=settings.platform_timeout_seconds) as client:
            response = await client.post(
                endpoint_url(url), json={"title": title, "content": content}, headers=headers
            )
    except httpx.HTTPError as exc:  # its text may carry the URL: name the type only
        log.warning("notifyOwner: the notification service is unreachable (%s)", type(exc).__name__)
        return False
    if not response.is_success:
        log.warning(
            "notifyOwner: the notification service answered HTTP %s: %s",
            response.status_code,
            response.text[:200],
        )
        return False
    return True
