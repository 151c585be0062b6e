"""The template's companion procedures the frontend calls on every page (SEED_API §2):
``auth.me``, ``auth.logout``, ``system.health``; and ``system.notifyOwner`` (admin only,
TEMPLATE_FLOWS §3.1; ``rpc.procedures.notify`` does the sending)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from rpc.auth.callback import same_site_flags
from rpc.auth.tokens import COOKIE_NAME
from rpc.context import Context
from rpc.procedures import notify
from storage.records import UserRecord


class HealthInput(BaseModel):
    timestamp: float = Field(ge=0)


class NotifyOwnerInput(BaseModel):
    # zod's `min(1)`; trimming and the length limits are the helper's (rpc.procedures.notify).
    title: str = Field(min_length=1)
    content: str = Field(min_length=1)


async def me(ctx: Context, _: None) -> dict[str, Any] | None:
    """``auth.me``: the caller's user row, or null without a session."""
    caller = await ctx.caller()
    if caller is None:
        return None
    user = await ctx.services.store.get_user(caller.user_id)
    return None if user is None else _user_json(user)


async def logout(ctx: Context, _: None) -> dict[str, bool]:
    """``auth.logout``: the session forgotten and its cookie cleared."""
    ctx.services.auth.forget(ctx.request)
    flags = same_site_flags(ctx.secure)
    ctx.response_headers.append(
        ("set-cookie", f"{COOKIE_NAME}=; Max-Age=0; Path=/; HttpOnly{flags}")
    )
    return {"success": True}


async def health(ctx: Context, _: HealthInput) -> dict[str, bool]:
    """``system.health``."""
    return {"ok": True}


async def notify_owner(ctx: Context, payload: NotifyOwnerInput) -> dict[str, bool]:
    """``system.notifyOwner`` (admins only)."""
    sent = await notify.notify_owner(ctx.services.settings, payload.title, payload.content)
    return {"success": sent}


def _user_json(user: UserRecord) -> dict[str, Any]:
    """auth.me's user: the users row under its column names."""
    return {
        "id": user.id, "openId": user.open_id, "name": user.name, "email": user.email,
        "loginMethod": user.login_method, "role": user.role, "createdAt": user.created_at,
        "updatedAt": user.updated_at, "lastSignedIn": user.last_signed_in,
    }  # fmt: skip
