"""Follow the gateway's fleet event stream into a :class:`FleetState`, forever.

Plain asyncio: the TUI runs :func:`follow_fleet` in one app-level worker, tests run it
as a task. Every (re)connect starts with the gateway's ``snapshot`` event, so nothing is
missed across a reconnect; failures back off exponentially and show in the state's
connection status ("reconnecting in Ns, stale since T").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from cortex.console.client import AsyncFleetClient, GatewayError
from cortex.console.state import FleetState

# The gateway sends `: ping` every 15 s on a quiet stream; three missed means it is gone
# (a half-open connection never errors by itself).
READ_TIMEOUT_S = 45.0


@dataclass(slots=True)
class Backoff:
    """Exponential delays: ``first``, doubled per failure, capped at ``cap``."""

    first: float = 0.5
    cap: float = 10.0
    factor: float = 2.0
    _next: float = 0.0

    def __post_init__(self) -> None:
        self._next = self.first

    def reset(self) -> None:
        self._next = self.first

    def next(self) -> float:
        delay = self._next
        self._next = min(self.cap, self._next * self.factor)
        return delay


async def follow_fleet(
    client: AsyncFleetClient,
    state: FleetState,
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    backoff: Backoff | None = None,
    read_timeout: float | None = READ_TIMEOUT_S,
) -> None:
    """Apply every fleet event to ``state``; reconnect with backoff until cancelled."""
    backoff = backoff or Backoff()
    while True:
        error: str
        try:
            first = True
            async for event in client.events(read_timeout=read_timeout):
                state.apply(event)
                if first:
                    first = False
                    state.connected(clock())
                    backoff.reset()
                    state.merge_log(await _history(client))
            error = "the gateway closed the stream"
        except GatewayError as exc:
            error = exc.message
        delay = backoff.next()
        state.disconnected(clock(), error, delay)
        await sleep(delay)


async def _history(client: AsyncFleetClient) -> list:
    """The log entries from before this connection: the stream carries only new ones."""
    try:
        return await client.recent_logs()
    except GatewayError:
        return []  # the stream itself says whether the gateway is there
