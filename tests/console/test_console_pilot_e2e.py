"""The TUI driven with Pilot against a real gateway and a real CPU neuron.

The fleet appears; ``l`` loads a model and its progress reaches loaded; ``p`` pins and
unpins it; ``u`` + confirm unloads it; a refused action shows the gateway's message;
a gateway that goes away shows as reconnecting; ``q`` quits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx
import pytest
from apps import SIZE
from support.gateway import start_gateway
from support.streams import NO_EOS

from cortex.console.app import CortexConsole
from cortex.console.screens.confirm import ConfirmScreen
from cortex.console.screens.load import LoadScreen
from cortex.console.screens.replicas import ReplicasScreen

pytestmark = pytest.mark.slow


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
        # The whole catalogue, nothing placed yet: one row per model on disk.
        assert app.models.row_keys == [f"m:{m}" for m in sorted(app.state.catalogue)]
        assert app.models.get_cell("m:demo-tiny", "state").plain == "available"
        assert app.models.get_cell("m:demo-tiny", "where").plain == "local"
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
        assert app.models.get_cell("m:demo-tiny", "state").plain == "● 1 loaded"
        app.models.move_cursor(row=app.models.row_keys.index(row))
        await pilot.pause()
        assert app.models.selected_key == row

        # p: pin, then p again: unpin.
        await pilot.press("p")
        await until(pilot, lambda: app.models.get_cell("m:demo-tiny", "pin").plain == "pinned")
        assert fleet.catalogue("demo-tiny")["pinned"] is True
        await pilot.press("p")
        await until(pilot, lambda: app.models.get_cell("m:demo-tiny", "pin").plain == "")
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
        await until(pilot, lambda: "demo-tiny@local" in app.models.row_keys)
        app.models.move_cursor(row=app.models.row_keys.index("demo-tiny@local"))
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


def stream_chat(url: str, request_id: str, max_tokens: int = 1900) -> None:
    """A long chat stream through the gateway: 1900 tokens (demo-tiny's context is 2048)
    keep it on the gateway for seconds, over several of the requests board's ticks."""
    body = {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "Count to a thousand."}],
        "max_tokens": max_tokens,
        "logit_bias": NO_EOS,
        "stream": True,
    }
    with httpx.Client(base_url=url, timeout=120) as client:
        headers = {"x-request-id": request_id}
        with client.stream("POST", "/v1/chat/completions", json=body, headers=headers) as reply:
            for _ in reply.iter_lines():
                pass


async def test_the_requests_view_follows_a_live_stream(fleet):
    fleet.gateway.post("/fleet/models/demo-tiny/load", json={}).raise_for_status()
    app = console(fleet)
    row = "r:req-console-e2e"
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.state.connection.status == "connected")
        await pilot.press("2")
        assert app.requests.display
        stream = asyncio.create_task(asyncio.to_thread(stream_chat, fleet.url, row[2:]))
        await until(pilot, lambda: row in app.requests.row_keys, within=60, what="request row")
        assert app.requests.get_cell(row, "model").plain == "demo-tiny"
        assert app.requests.get_cell(row, "node").plain == "local"
        assert app.requests.get_cell(row, "client").plain == "openai chat"
        await until(
            pilot,
            lambda: app.requests.get_cell(row, "state").plain == "streaming",
            within=60,
            what="its first token",
        )
        assert app.requests.get_cell(row, "ttft").plain.endswith(("ms", "s"))
        assert "in flight" in app.requests.border_title
        await stream
        await until(pilot, lambda: row not in app.requests.row_keys, within=10, what="row gone")


async def test_replicas_from_the_console_reach_the_gateway(fleet):
    app = console(fleet)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "m:demo-tiny" in app.models.row_keys, what="catalogue")
        app.models.move_cursor(row=app.models.row_keys.index("m:demo-tiny"))
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ReplicasScreen) and screen.model == "demo-tiny"
        screen.set_range(0, 2)
        await pilot.pause()
        await pilot.click("#replicas-confirm")

        def saved() -> bool:
            replicas = fleet.catalogue("demo-tiny").get("replicas") or {}
            return (replicas.get("min"), replicas.get("max")) == (0, 2)

        await until(pilot, saved, within=30, what="the gateway's range for demo-tiny")
        assert fleet.catalogue("demo-tiny")["replicas"]["source"] == "api"
        await until(
            pilot,
            lambda: app.models.get_cell("m:demo-tiny", "replicas").plain.endswith(" 0-2"),
            within=10,
            what="the new range in the models table",
        )
