"""The cockpit views over a fixed fleet (no gateway): requests, replicas, prefix cache.

The requests view is fed by the same ``requests`` event the gateway publishes; the
replicas dialog checks its range before anything is sent and says what it will do.
"""

from __future__ import annotations

import io

from apps import SIZE, cell, console
from fleets import T0
from rich.console import Console

from cortex.common.fleet import ActiveRequest, RequestsUpdate
from cortex.console.screens.detail import DetailScreen, catalogue_details, model_details
from cortex.console.screens.replicas import ReplicasScreen, consequence, parse_range


async def test_2_shows_the_requests_in_flight_and_1_the_nodes_again():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        assert app.nodes.display and not app.requests.display
        await pilot.press("2")
        assert app.requests.display and not app.nodes.display
        assert app.requests.row_keys == ["r:req-claude-code-1", "r:req-codex-7", "r:req-4f2a"]
        row = "r:req-claude-code-1"
        assert cell(app.requests, row, "client") == "anthropic"
        assert cell(app.requests, row, "node") == "alpha"
        assert cell(app.requests, row, "state") == "streaming"
        assert cell(app.requests, row, "tps") == "42.3"
        assert cell(app.requests, row, "ttft") == "812 ms"
        assert cell(app.requests, row, "age") == "1m14s"
        assert cell(app.requests, "r:req-codex-7", "client") == "openai resp"
        assert cell(app.requests, "r:req-4f2a", "state") == "queued"
        assert cell(app.requests, "r:req-4f2a", "node") == "-"
        assert app.requests.border_title == "Requests (3 in flight)"
        await pilot.press("1")
        assert app.nodes.display and not app.requests.display


async def test_the_next_requests_event_replaces_the_list():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        later = ActiveRequest(
            id="req-codex-7",
            model="qwen2.5-coder-7b",
            endpoint="responses",
            age_s=4.4,
            neuron="alpha",
            ttft_ms=95.0,
            tokens=162,
            tokens_per_s=42.0,
        )
        app.state.apply(RequestsUpdate(requests=[later], total=140))
        app.flush()
        await pilot.pause()
        assert app.requests.row_keys == ["r:req-codex-7"], "ended requests leave the view"
        assert cell(app.requests, "r:req-codex-7", "tokens") == "162"
        assert app.requests.border_title == "Requests (1 of 140 in flight)"


async def test_enter_on_a_request_opens_its_placement():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        app.requests.focus()
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.target == ("model", ("qwen2.5-coder-7b", "alpha"))
        await pilot.press("escape", "down", "down", "enter")
        assert app.screen.target == ("catalogue", "llama-3.1-8b"), "queued: its model"


async def test_the_filter_narrows_the_requests_too():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2", "slash", "l", "l", "a", "m", "a")
        assert app.requests.row_keys == ["r:req-4f2a"]


def test_a_placements_details_show_its_prefix_cache(fleet_state):
    text = plain(model_details(fleet_state, ("qwen2.5-coder-7b", "alpha"), T0))
    assert "1.25 GiB of 2.00 GiB (6 sequences)" in text
    assert "78% (31/40)" in text
    assert "612,480 prompt tokens reused" in text
    # A neuron without a prefix cache (or an older one) says so instead of inventing one.
    assert "not reported by this neuron" in plain(
        model_details(fleet_state, ("demo-tiny", "beta"), T0)
    )


def test_a_models_details_show_replicas_and_its_placements(fleet_state):
    text = plain(catalogue_details(fleet_state, "qwen2.5-coder-7b", T0))
    assert "1 serving, 2 wanted" in text and "1-2 (config)" in text
    assert "5 waiting, longest 6.5 s" in text
    assert "78% (31/40)" in text, "the placements' caches, summed"
    assert "alpha" in text and "loaded" in text


def plain(renderable) -> str:
    console = Console(width=120, file=io.StringIO())
    console.print(renderable)
    return console.file.getvalue()


def test_a_replica_range_is_checked_before_it_is_sent():
    assert parse_range("1", "3") == (1, 3)
    assert parse_range("0", "1") == (0, 1)
    assert parse_range("2", "1") == "MIN (2) must not be above MAX (1)"
    assert parse_range("0", "0") == "MAX must be 1 or more"
    assert parse_range("-1", "2") == "MIN must be 0 or more"
    assert parse_range("one", "2") == "MIN and MAX are whole numbers"


def test_the_dialog_says_what_a_range_will_do():
    assert "loads 2 more" in consequence(None, 1, 3, 4)
    assert "1 replica(s) above MAX are unloaded" in consequence(None, 2, 0, 1)
    assert "Nothing loads or unloads now" in consequence(None, 1, 1, 3)


async def test_r_asks_for_the_range_and_cancel_sends_nothing():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        app.models.move_cursor(row=app.models.row_keys.index("qwen2.5-coder-7b@alpha"))
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ReplicasScreen)
        assert screen.model == "qwen2.5-coder-7b", "a placement row's model"
        assert screen.query_one("#replicas-min").value == "1"
        assert screen.query_one("#replicas-max").value == "2", "starts at the current range"
        assert app.focused is screen.query_one("#replicas-cancel"), "cancel has the focus"
        screen.set_range(3, 1)
        await pilot.pause()
        assert screen.query_one("#replicas-confirm").disabled
        assert "must not be above" in screen.message
        screen.set_range(2, 3)
        await pilot.pause()
        assert not screen.query_one("#replicas-confirm").disabled
        assert "loads 1 more" in screen.message
        await pilot.press("escape")
        assert app.screen is app.screen_stack[0]
        assert "replicas" not in "\n".join(s.text for s in app.event_log.lines)


async def test_confirming_without_a_gateway_says_so():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ReplicasScreen) and screen.model == "demo-tiny"
        screen.set_range(1, 2)
        await pilot.pause()
        await pilot.click("#replicas-confirm")
        await pilot.pause()
        assert app.screen is app.screen_stack[0]
        assert any("Not connected" in str(n.message) for n in app._notifications)
