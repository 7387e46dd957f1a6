"""Fan-out of fleet events to every ``GET /fleet/events`` subscriber.

Events are encoded once (SSE bytes) and queued per subscriber. A subscriber that
falls too far behind is not allowed to slow the scheduler: its queue is dropped and
it is told to resynchronise, which the endpoint does by sending a fresh snapshot.
"""

from __future__ import annotations

import asyncio
from collections import deque

from cortex.common.fleet import FleetEvent, LogEntry, LogEvent
from cortex.common.sse import encode_json

RESYNC = b""  # queued in place of the events a slow subscriber missed


class Subscription:
    def __init__(self, hub: EventHub, limit: int) -> None:
        self._hub = hub
        self.queue: asyncio.Queue[bytes] = asyncio.Queue(maxsize=limit)

    def offer(self, data: bytes) -> None:
        try:
            self.queue.put_nowait(data)
        except asyncio.QueueFull:
            while not self.queue.empty():
                self.queue.get_nowait()
            self.queue.put_nowait(RESYNC)

    def close(self) -> None:
        self._hub.unsubscribe(self)


class EventHub:
    def __init__(self, limit: int = 2048, log_history: int = 200) -> None:
        self._subscribers: set[Subscription] = set()
        self._limit = limit
        self.recent_logs: deque[LogEntry] = deque(maxlen=log_history)

    def subscribe(self) -> Subscription:
        subscription = Subscription(self, self._limit)
        self._subscribers.add(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)

    def publish(self, event: FleetEvent) -> None:
        if isinstance(event, LogEvent):
            self.recent_logs.append(event.entry)
        if not self._subscribers:
            return
        data = encode_json(event, event=str(type(event).__struct_config__.tag))
        for subscription in list(self._subscribers):
            subscription.offer(data)
