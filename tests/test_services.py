"""What the server keeps in memory hangs off the app's services (issue 14 item 4): each app
has its own live-progress hub, quota state and streamed calls, made from one settings root
(``rpc.config.Settings``), and closing the live progress ends its listeners."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from rpc.config import Settings
from rpc.context import Services
from rpc.wire.sse import Closed, TRPCFraming


class Feed:  # the ChangeFeed's surface the hub uses at start
    last_id = 0

    def __init__(self) -> None:
        self.subscribers: list[Any] = []

    def subscribe(self, callback: Any) -> Any:
        self.subscribers.append(callback)
        return lambda: self.subscribers.remove(callback)


class Store:
    def __init__(self) -> None:
        self.feed = Feed()


def settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


@pytest.mark.anyio
async def test_each_app_has_its_own_state() -> None:
    store = Store()
    one = Services(settings(), store, None)  # type: ignore[arg-type]
    two = Services(settings(), store, None)  # type: ignore[arg-type]
    assert one.quotas is not two.quotas and one.running is not two.running
    assert store.feed.subscribers == []  # nobody watches yet: no subscriber on the feed
    hub = one.live.hub()
    assert one.live.hub() is hub and two.live.hub() is not hub
    assert len(store.feed.subscribers) == 2


@pytest.mark.anyio
async def test_closing_the_live_progress_ends_its_listeners() -> None:
    services = Services(settings(sse_queue_limit=7), Store(), None)  # type: ignore[arg-type]
    services.live.close_threadsafe()  # no hub yet: nothing to close
    hub = services.live.hub()
    assert hub.queue_limit == 7
    with hub.listen(job_id=1) as listener:
        services.live.close_threadsafe()  # as the signal handler calls it
        with pytest.raises(Closed):
            await listener.wait()
    with pytest.raises(Closed), hub.listen(user_id=1):
        pass


def test_live_progress_settings_come_from_the_one_settings_root() -> None:
    chosen = settings(sse_ping_ms=5000, sse_reconnect_after_inactivity_ms=20000, sse_retry_ms=9)
    framing = TRPCFraming(sj=False, path="p", last_event_id=None, settings=chosen)
    assert framing.opening() == (
        b'event: connected\ndata: {"reconnectAfterInactivityMs":20000}\nretry: 9\n\n\n'
    )
    with pytest.raises(ValidationError, match="SSE_PING_MS"):
        settings(sse_ping_ms=30_000, sse_reconnect_after_inactivity_ms=30_000)
