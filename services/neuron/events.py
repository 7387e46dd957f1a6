"""The neuron's event stream: fan-out to ``GET /events`` subscribers, with coalescing.

Each event is encoded once (SSE ``event:`` = the struct's tag, ``data:`` = its JSON) and
handed to every subscriber's queue. A subscriber that falls far behind is dropped (its
stream ends; a client reconnects and gets a fresh ``status``) rather than buffering
without bound. Model updates are coalesced to at most one per model per interval, except
state changes, which go out at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable

import msgspec

from cortex.common.sse import encode_json

SUBSCRIBER_BACKLOG = 1024


def encode_event(event: msgspec.Struct) -> bytes:
    return encode_json(event, str(type(event).__struct_config__.tag))


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue] = set()

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_BACKLOG)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        self._subscribers.discard(queue)

    @property
    def subscribers(self) -> int:
        return len(self._subscribers)

    def publish(self, event: msgspec.Struct) -> None:
        if not self._subscribers:
            return
        data = encode_event(event)
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(data)
            except asyncio.QueueFull:
                self._subscribers.discard(queue)
                with contextlib.suppress(asyncio.QueueFull):
                    queue.get_nowait()
                    queue.put_nowait(None)  # tells the stream to end


class Coalescer:
    """Calls ``emit(key)`` at most once per ``interval`` seconds per key."""

    def __init__(self, emit: Callable[[str], None], interval: float = 1.0) -> None:
        self._emit = emit
        self._interval = interval
        self._last: dict[str, float] = {}
        self._pending: dict[str, asyncio.TimerHandle] = {}

    def touch(self, key: str, urgent: bool = False) -> None:
        now = time.monotonic()
        last = self._last.get(key, 0.0)
        if urgent or now - last >= self._interval:
            self._fire(key)
        elif key not in self._pending:
            loop = asyncio.get_running_loop()
            self._pending[key] = loop.call_later(last + self._interval - now, self._fire, key)

    def _fire(self, key: str) -> None:
        handle = self._pending.pop(key, None)
        if handle is not None:
            handle.cancel()
        self._last[key] = time.monotonic()
        self._emit(key)

    def forget(self, key: str) -> None:
        handle = self._pending.pop(key, None)
        if handle is not None:
            handle.cancel()
        self._last.pop(key, None)
