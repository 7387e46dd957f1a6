"""Console test fixtures: a deterministic app over a fixed fleet, local time pinned to UTC."""

from __future__ import annotations

import os
import time

import pytest
from fleets import SMALL_FLEET_HISTORY, T0, small_fleet, small_fleet_log

from cortex.common.fleet import SnapshotEvent
from cortex.console.state import FleetState


@pytest.fixture
def utc():
    """Log and header clocks print local time; pin it so snapshots match anywhere."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def small_fleet_state(*, connected: bool = True) -> FleetState:
    """The small fleet as the stream would leave it, with a tok/s history and a log."""
    state = FleetState()
    state.apply(SnapshotEvent(small_fleet()))
    for key, values in SMALL_FLEET_HISTORY.items():
        state.history[key].extend(values[:-1])
    state.sample(T0)  # the last sample: the placements' current tok/s
    for entry in small_fleet_log():
        state.add_log(entry)
    if connected:
        state.connected(T0 - 600)
    return state


@pytest.fixture
def fleet_state() -> FleetState:
    return small_fleet_state()
