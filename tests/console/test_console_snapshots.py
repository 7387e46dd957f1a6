"""SVG snapshots of the console's screens at a fixed size over a fixed fleet.

The app is fed the same FleetState the event stream writes, with the clock frozen at
T0, so every run draws the same picture. Update with ``pytest --snapshot-update``.
"""

from __future__ import annotations

import pytest
from apps import SIZE, console
from conftest import small_fleet_state
from fleets import T0

from cortex.console.format import Thresholds


@pytest.fixture(autouse=True)
def _utc(utc):
    yield


def test_main_screen(snap_compare):
    assert snap_compare(console(), terminal_size=SIZE)


def test_main_screen_readonly_has_no_actions(snap_compare):
    assert snap_compare(console(readonly=True), terminal_size=SIZE)


def test_custom_memory_thresholds(snap_compare):
    # 40/50: every device but cuda:0 (44%: yellow) is red.
    assert snap_compare(console(vram_thresholds=Thresholds(40, 50)), terminal_size=SIZE)


def test_reconnecting_header(snap_compare):
    state = small_fleet_state()
    state.disconnected(T0 - 30, "connection refused", retry_in=34)
    assert snap_compare(console(state), terminal_size=SIZE)


def test_load_dialog(snap_compare):
    async def open_dialog(pilot):
        await pilot.press("l")

    assert snap_compare(console(), terminal_size=SIZE, run_before=open_dialog)


def test_load_dialog_target_chosen(snap_compare):
    async def choose(pilot):
        await pilot.press("l", "down", "enter", "down")

    assert snap_compare(console(), terminal_size=SIZE, run_before=choose)


def test_unload_confirmation(snap_compare):
    async def ask(pilot):
        await pilot.press("down", "down", "down", "down", "down", "u")  # qwen on alpha: busy

    assert snap_compare(console(), terminal_size=SIZE, run_before=ask)


def test_help(snap_compare):
    async def ask(pilot):
        await pilot.press("question_mark")

    assert snap_compare(console(), terminal_size=SIZE, run_before=ask)


def test_model_details(snap_compare):
    async def open_details(pilot):
        await pilot.press("down", "down", "down", "down", "down", "enter")

    assert snap_compare(console(), terminal_size=SIZE, run_before=open_details)


def test_neuron_details(snap_compare):
    async def open_details(pilot):
        pilot.app.nodes.focus()
        await pilot.press("enter")

    assert snap_compare(console(), terminal_size=SIZE, run_before=open_details)


def test_filter(snap_compare):
    async def type_filter(pilot):
        await pilot.press("slash")
        pilot.app.query_one("#filter").cursor_blink = False
        await pilot.press("q", "w", "e", "n")

    assert snap_compare(console(), terminal_size=SIZE, run_before=type_filter)


def test_requests_view(snap_compare):
    async def show(pilot):
        await pilot.press("2")

    assert snap_compare(console(), terminal_size=SIZE, run_before=show)


def test_replicas_dialog(snap_compare):
    async def ask(pilot):
        await pilot.press("down", "down", "down", "down", "r")  # qwen2.5-coder-7b

    assert snap_compare(console(), terminal_size=SIZE, run_before=ask)


def test_catalogue_model_details(snap_compare):
    async def open_details(pilot):
        await pilot.press("down", "down", "down", "down", "enter")

    assert snap_compare(console(), terminal_size=SIZE, run_before=open_details)
