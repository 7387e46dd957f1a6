"""The stream follower when the gateway is not there: backoff, and the state says so."""

from __future__ import annotations

import asyncio

import pytest
from support.ports import free_port

from cortex.console.client import AsyncFleetClient
from cortex.console.state import FleetState
from cortex.console.stream import Backoff, follow_fleet


def test_backoff_doubles_to_the_cap_and_resets():
    backoff = Backoff(first=0.5, cap=4.0)
    assert [backoff.next() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5


async def test_unreachable_gateway_shows_reconnecting_with_backoff():
    state = FleetState()
    client = AsyncFleetClient(f"http://127.0.0.1:{free_port()}")
    delays: list[float] = []
    enough = asyncio.Event()

    async def sleep(seconds: float) -> None:
        delays.append(seconds)
        if len(delays) == 3:
            enough.set()
        await asyncio.sleep(0)

    task = asyncio.create_task(follow_fleet(client, state, clock=lambda: 100.0, sleep=sleep))
    await asyncio.wait_for(enough.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await client.aclose()
    assert delays[:3] == [0.5, 1.0, 2.0]
    connection = state.connection
    assert connection.status == "reconnecting"
    assert "cannot reach the gateway" in (connection.error or "")
    assert connection.attempts >= 3
    log = state.take_changes().log
    assert len(log) == 1, "one log line per outage, not one per attempt"
    assert log[0].level == "error"
