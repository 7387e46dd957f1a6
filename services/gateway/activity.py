"""The requests the gateway is serving now, on the fleet event stream once a second.

Each request's :class:`~cortex.services.gateway.proxy.Meter` is tracked here from the
moment it is measured until it reports. Nothing happens per relayed chunk: a ticker reads
the meters (model, neuron, first token, events so far) once a ``interval`` and publishes
one ``requests`` event listing at most ``limit`` of them, oldest first, and only while
there are requests (plus one empty list when the last one ends). Meters are held weakly,
so a request whose stream is dropped before it starts cannot stay listed forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from typing import TYPE_CHECKING

from cortex.common.fleet import ActiveRequest, RequestsUpdate
from cortex.common.sse import encode_json

if TYPE_CHECKING:
    from cortex.services.gateway.hub import EventHub
    from cortex.services.gateway.proxy import Meter

INTERVAL_S = 1.0
LIMIT = 100


def active_request(meter: Meter, now: float) -> ActiveRequest:
    """What ``meter`` knows about its request at ``now`` (``time.perf_counter``)."""
    first = meter.first_token_at
    tokens = max(0, meter.events - 1) if first is not None else 0  # less the role chunk
    since_first = now - first if first is not None else 0.0
    return ActiveRequest(
        id=meter.request_id,
        model=meter.model,
        endpoint=meter.endpoint,
        age_s=round(now - meter.started, 3),
        neuron=meter.neuron or None,
        ttft_ms=round((first - meter.started) * 1000, 1) if first is not None else None,
        tokens=tokens,
        tokens_per_s=round(tokens / since_first, 1) if since_first > 0.05 else 0.0,
    )


class RequestBoard:
    def __init__(self, hub: EventHub, *, interval: float = INTERVAL_S, limit: int = LIMIT) -> None:
        self.hub = hub
        self.interval = interval
        self.limit = limit
        self._meters: weakref.WeakSet[Meter] = weakref.WeakSet()
        self._listed = False  # the last published list was not empty
        self._task: asyncio.Task | None = None

    def track(self, meter: Meter) -> None:
        self._meters.add(meter)

    def done(self, meter: Meter) -> None:
        self._meters.discard(meter)

    def __len__(self) -> int:
        return len(self._meters)

    def update(self) -> RequestsUpdate:
        now = time.perf_counter()
        meters = sorted(self._meters, key=lambda m: m.started)
        listed = [active_request(m, now) for m in meters[: self.limit]]
        return RequestsUpdate(requests=listed, total=len(meters))

    def event_bytes(self) -> bytes | None:
        """The current list as an SSE event, for a new subscriber; None when idle."""
        if not self._meters:
            return None
        return encode_json(self.update(), event="requests")

    def publish(self) -> None:
        """One ``requests`` event, if there is anything to say since the last one."""
        if not self._meters and not self._listed:
            return
        update = self.update()
        self._listed = bool(update.requests)
        self.hub.publish(update)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="request-board")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.publish()
