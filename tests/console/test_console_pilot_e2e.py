"""The TUI driven with Pilot against a real gateway and a real CPU neuron.

The fleet appears; ``l`` loads a model and its progress reaches loaded; ``p`` pins and
unpins it; ``u`` + confirm unloads it; a refused action shows the gateway's message;
a gateway that goes away shows as reconnecting; ``q`` quits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
from support.gateway import start_gateway

from cortex.console.app import CortexConsole
from cortex.console.screens.confirm import ConfirmScreen
from cortex.console.screens.load import LoadScreen

pytestmark = pytest.mark.slow

SIZE = (140, 42)


async def until(pilot, predicate: Callable[[], object], within: float = 120.0, what: str = ""):
    """Let the app run until ``predicate()`` holds; fail at the deadline."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within:.0f}s: {what or predicate}")
        await pilot.pause(0.1)


def log_text(app: CortexConsole) -> str:
    return "\n".join(strip.text for strip in app.event_log.lines)


def state_cell(app: CortexConsole, row: str) -> str:
    return app.models.get_cell(row, "state").plain


def console(fleet) -> CortexConsole:
    return CortexConsole(gateway=fleet.url, token=fleet.token)


async def test_the_fleet_appears(fleet):
    app = console(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "n:local" in app.nodes.row_keys, what="neuron row")
        assert app.state.connection.status == "connected"
        assert app.nodes.row_keys == ["n:local", "d:local:cpu"]
        assert app.nodes.get_cell("n:local", "status").plain == "● up"
        assert sorted(app.state.catalogue) == ["demo-long", "demo-small", "demo-tiny"]
        header = str(app.query_one("#header").render())
        assert "● connected" in header and "neurons 1/1 up" in header and "1 CPU" in header
        assert app.models.row_keys == []
        # What happened before the console connected comes from the gateway's history.
        await until(pilot, lambda: "neuron local is up" in log_text(app), what="log history")


async def test_a_missing_token_says_how_to_fix_it(fleet):
    app = CortexConsole(gateway=fleet.url)  # the gateway wants its admin token
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.connection.status == "reconnecting")
        await pilot.pause(0.6)
        header = str(app.query_one("#header").render())
        assert "not connected" in header and "--token" in header
        assert app.nodes.row_keys == []


async def test_load_pin_unpin_unload_and_quit(fleet):
    app = console(fleet)
    row = "demo-tiny@local"
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.catalogue, what="catalogue")

        # l: pick demo-tiny, target the neuron, load.
        await pilot.press("l")
        assert isinstance(app.screen, LoadScreen)
        app.screen.select("demo-tiny", "local")
        await pilot.click("#load-confirm")
        assert not isinstance(app.screen, LoadScreen)

        seen_states: list[str] = []

        def loaded() -> bool:
            placement = app.state.placements.get(("demo-tiny", "local"))
            if placement is not None and (not seen_states or seen_states[-1] != placement.state):
                seen_states.append(placement.state)
            return row in app.models.row_keys and state_cell(app, row) == "loaded"

        await until(pilot, loaded, within=180, what="demo-tiny loaded in the table")
        assert seen_states[0] == "loading" and seen_states[-1] == "loaded", seen_states
        assert [p["state"] for p in fleet.placements("demo-tiny")] == ["loaded"]
        assert app.models.selected_key == row

        # p: pin, then p again: unpin.
        await pilot.press("p")
        await until(pilot, lambda: app.models.get_cell(row, "pin").plain == "pinned")
        assert fleet.catalogue("demo-tiny")["pinned"] is True
        await pilot.press("p")
        await until(pilot, lambda: app.models.get_cell(row, "pin").plain == "")
        assert not fleet.catalogue("demo-tiny").get("pinned")

        # u: asks, naming model and neuron; yes unloads.
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        assert "demo-tiny" in app.screen.message and "local" in app.screen.message
        await pilot.click("#yes")
        await until(pilot, lambda: row not in app.models.row_keys, what="row gone")
        assert fleet.placements("demo-tiny") == []
        assert "unload" in log_text(app)

        await pilot.press("q")
        await until(pilot, lambda: not app.is_running, within=10, what="quit")


async def test_unload_cancelled_keeps_the_model(fleet):
    fleet.gateway.post("/fleet/models/demo-tiny/load", json={}).raise_for_status()
    app = console(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.models.row_keys == ["demo-tiny@local"])
        await pilot.press("u")
        await pilot.click("#no")
        await pilot.pause(0.5)
        assert [p["state"] for p in fleet.placements("demo-tiny")] == ["loaded"]


async def test_a_refused_action_shows_the_gateways_message(fleet):
    refusal = fleet.gateway.post("/fleet/models/demo-small/unload", json={"neuron": "local"})
    assert refusal.status_code == 409, "demo-small is not loaded: the gateway refuses"
    message = refusal.json()["error"]["message"]
    app = console(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.catalogue, what="catalogue")
        app.request_action("unload", "demo-small", "local")
        await until(pilot, lambda: message in log_text(app), what="the gateway's words")
        assert f"unload demo-small failed: {message}" in log_text(app)


async def test_a_gateway_that_goes_away_shows_as_reconnecting(fleet, tmp_path):
    with start_gateway(tmp_path / "gateway", neurons={"local": fleet.neuron.url}) as gateway:
        app = CortexConsole(gateway=gateway.url)
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: app.state.connection.status == "connected")
            await until(pilot, lambda: "n:local" in app.nodes.row_keys)
            await asyncio.to_thread(gateway.stop)
            await until(pilot, lambda: app.state.connection.status == "reconnecting")
            await pilot.pause(0.6)  # one flush
            header = str(app.query_one("#header").render())
            assert "reconnecting" in header and "stale since" in header
            assert "lost the gateway's event stream" in log_text(app)
            assert app.nodes.row_keys, "the last known fleet stays on screen"
