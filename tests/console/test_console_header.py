"""The header: fleet at a glance and the connection state, as a person reads it."""

from __future__ import annotations

from conftest import small_fleet_state
from fleets import T0

from cortex.console.state import FleetState
from cortex.console.widgets.header import header_text


def test_connected_header_sums_up_the_fleet(utc):
    text = header_text(small_fleet_state(), T0, "http://gw:31313").plain
    assert "http://gw:31313  ● connected" in text
    assert "neurons 2/3 up" in text
    assert "2 GPUs + 1 CPU" in text
    assert "VRAM" in text and "33.3/48.0 GiB" in text
    assert "RAM" in text and "51.5/64.0 GiB" in text
    assert "97.1 tok/s" in text
    assert "2 in flight · 1 queued" in text
    assert "models 2 loaded · 1 loading" in text


def test_lost_connection_counts_down_and_says_since_when(utc):
    state = small_fleet_state()
    state.disconnected(T0 - 30, "connection refused", retry_in=33.2)
    text = header_text(state, T0, "http://gw:31313").plain
    assert "○ reconnecting in 4s · stale since 08:52:50 · connection refused" in text
    assert "neurons 2/3 up" in text, "the last known fleet stays"


def test_never_connected_does_not_claim_stale_data():
    state = FleetState()
    state.disconnected(T0, "cannot reach the gateway", retry_in=2)
    text = header_text(state, T0 + 0.5, "http://gw:31313").plain
    assert "○ not connected · retrying in 2s · cannot reach the gateway" in text
    assert "stale" not in text


def test_readonly_is_visible():
    assert "[read-only]" in header_text(FleetState(), T0, "g", readonly=True).plain
