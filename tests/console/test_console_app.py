"""The app over a fixed fleet (no gateway): diffs, keys, readonly, filter, palette, quit."""

from __future__ import annotations

from apps import SIZE, cell, console
from conftest import small_fleet_state
from fleets import synthetic_fleet

from cortex.common.fleet import (
    Placement,
    PlacementRemoved,
    PlacementUpdate,
    ReplicaStatus,
    SnapshotEvent,
)
from cortex.console.commands import fleet_commands
from cortex.console.screens.confirm import ConfirmScreen
from cortex.console.screens.detail import DetailScreen
from cortex.console.screens.help import HelpScreen
from cortex.console.screens.load import LoadScreen
from cortex.console.state import FleetState


async def test_tables_show_every_neuron_device_and_placement():
    app = console()
    async with app.run_test(size=SIZE):
        assert app.nodes.row_keys == [
            "n:alpha",
            "d:alpha:cuda:0",
            "d:alpha:cuda:1",
            "n:beta",
            "d:beta:cpu",
            "n:gamma",
        ]
        # Every catalogue model, each followed by its placements.
        assert app.models.row_keys == [
            "m:demo-tiny",
            "demo-tiny@beta",
            "m:llama-3.1-8b",
            "llama-3.1-8b@alpha",
            "m:qwen2.5-coder-7b",
            "qwen2.5-coder-7b@alpha",
        ]
        assert cell(app.models, "llama-3.1-8b@alpha", "state").endswith(" 41%")
        assert cell(app.models, "m:llama-3.1-8b", "state") == "◌ loading"
        assert cell(app.models, "m:qwen2.5-coder-7b", "pin") == "pinned"
        assert cell(app.models, "m:demo-tiny", "where") == "alpha,beta"
        assert cell(app.models, "m:demo-tiny", "memory") == "~350 MiB"
        assert cell(app.models, "demo-tiny@beta", "memory") == "310 MiB"
        assert cell(app.nodes, "d:alpha:cuda:1", "memory").endswith(" 95%")
        assert cell(app.nodes, "n:gamma", "device") == "connection refused"


async def test_a_catalogue_model_that_is_not_loaded_has_its_own_row():
    state = small_fleet_state()
    state.apply(PlacementRemoved(model="llama-3.1-8b", neuron="alpha"))
    app = console(state)
    async with app.run_test(size=SIZE):
        keys = app.models.row_keys
        assert "m:llama-3.1-8b" in keys and "llama-3.1-8b@alpha" not in keys
        assert cell(app.models, "m:llama-3.1-8b", "state") == "available"
        assert cell(app.models, "m:llama-3.1-8b", "where") == "alpha"
        assert cell(app.models, "m:llama-3.1-8b", "memory") == "~9.00 GiB"


async def test_replicas_show_serving_wanted_and_the_range():
    state = small_fleet_state()
    entry = state.catalogue["qwen2.5-coder-7b"]
    entry.replicas = ReplicaStatus(min=1, max=3, source="api", wanted=2, actual=1)
    app = console(state)
    async with app.run_test(size=SIZE):
        assert cell(app.models, "m:qwen2.5-coder-7b", "replicas") == "1/2 1-3"
        # An older gateway reports no replicas: the loaded placements are counted.
        assert cell(app.models, "m:demo-tiny", "replicas") == "1"


async def test_a_flush_updates_only_changed_rows_and_keeps_the_cursor():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        app.models.move_cursor(row=5)
        await pilot.pause()
        built = app.models.rows_built
        busy = Placement(
            model="qwen2.5-coder-7b",
            neuron="alpha",
            state="loaded",
            devices=["cuda:0"],
            in_flight=7,
            tokens_per_s=150.0,
        )
        app.state.apply(PlacementUpdate(busy))
        app.flush()
        await pilot.pause()
        assert cell(app.models, "qwen2.5-coder-7b@alpha", "in_flight") == "7"
        assert cell(app.models, "qwen2.5-coder-7b@alpha", "tps") == "150"
        assert cell(app.models, "m:qwen2.5-coder-7b", "in_flight") == "7", "the model sums"
        # The placement, its model's row, and the two placements' tok/s history.
        assert app.models.rows_built - built <= 4
        assert app.models.selected_key == "qwen2.5-coder-7b@alpha"
        header = str(app.query_one("#header").render())
        assert "162 tok/s" in header and "7 in flight" in header  # 150 + 12.5 on beta


async def test_placements_come_and_go_and_the_cursor_stays_on_its_row():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        app.models.move_cursor(row=5)  # qwen2.5-coder-7b@alpha
        app.state.apply(PlacementUpdate(Placement(model="aaa", neuron="beta", state="loading")))
        app.flush()
        await pilot.pause()
        assert app.models.row_keys[:2] == ["m:aaa", "aaa@beta"], "a placement not catalogued yet"
        assert app.models.selected_key == "qwen2.5-coder-7b@alpha"
        app.state.apply(PlacementRemoved(model="demo-tiny", neuron="beta"))
        app.flush()
        await pilot.pause()
        assert "demo-tiny@beta" not in app.models.row_keys
        assert app.models.selected_key == "qwen2.5-coder-7b@alpha"
        assert "demo-tiny" not in cell(app.nodes, "n:beta", "models")


async def test_log_entries_reach_the_event_log():
    app = console()
    async with app.run_test(size=SIZE):
        assert app.event_log.lines_written == 5
        text = "\n".join(strip.text for strip in app.event_log.lines)
        assert "evicted mistral-7b" in text and "(reason: lru)" in text


async def test_keys_open_help_details_load_and_unload_confirmation():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.target == ("catalogue", "demo-tiny")
        await pilot.press("escape", "down", "enter")
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.target == ("model", ("demo-tiny", "beta"))
        await pilot.press("escape")
        await pilot.press("l")
        assert isinstance(app.screen, LoadScreen)
        assert app.screen.selected_model == "demo-tiny", "starts on the selected model"
        await pilot.press("escape")
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        assert "demo-tiny" in app.screen.message and "beta" in app.screen.message
        await pilot.press("n")
        assert not isinstance(app.screen, ConfirmScreen)


async def test_enter_on_a_device_row_opens_its_neuron():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        app.nodes.focus()
        await pilot.press("down", "down", "enter")
        assert isinstance(app.screen, DetailScreen)
        assert app.screen.target == ("neuron", "alpha")


async def test_readonly_hides_every_action():
    app = console(readonly=True)
    async with app.run_test(size=SIZE) as pilot:
        for action in ("load", "unload", "pin", "replicas"):
            assert app.check_action(action, ()) is False
        await pilot.press("l", "u", "p", "r")
        assert app.screen is app.screen_stack[0], "no dialog opened"
        footer_keys = {b.key for _, b, enabled, _ in app.active_bindings.values() if b.show}
        assert not footer_keys & {"l", "u", "p", "r"}
        titles = [title for title, _, _ in fleet_commands(app)]
        verbs = {title.split()[0] for title in titles}
        assert titles and not verbs & {"Load", "Unload", "Pin", "Unpin", "Replicas"}


async def test_unload_pin_and_replicas_are_disabled_without_a_model():
    state = small_fleet_state()
    state.apply(SnapshotEvent(synthetic_fleet(1, 1, 0)))
    app = console(state)
    async with app.run_test(size=SIZE) as pilot:
        assert app.models.row_keys == []
        for action in ("unload", "pin", "replicas"):
            assert app.check_action(action, ()) is None
        assert app.check_action("load", ()) is True
        await pilot.press("u")
        assert app.screen is app.screen_stack[0]


async def test_unload_on_a_model_row_asks_for_every_placement_or_is_disabled():
    state = small_fleet_state()
    state.apply(PlacementUpdate(Placement(model="demo-tiny", neuron="alpha", state="loaded")))
    state.apply(PlacementRemoved(model="llama-3.1-8b", neuron="alpha"))
    app = console(state)
    async with app.run_test(size=SIZE) as pilot:
        assert app.models.selected_key == "m:demo-tiny"
        await pilot.press("u")
        assert isinstance(app.screen, ConfirmScreen)
        assert "every neuron" in app.screen.message and "alpha, beta" in app.screen.message
        await pilot.press("n")
        app.models.move_cursor(row=app.models.row_keys.index("m:llama-3.1-8b"))
        await pilot.pause()
        assert app.check_action("unload", ()) is None, "placed nowhere: nothing to unload"
        assert app.check_action("pin", ()) is True and app.check_action("replicas", ()) is True


async def test_filter_narrows_both_tables_and_escape_restores():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("slash", "t", "i", "n", "y")
        assert app.models.row_keys == ["m:demo-tiny", "demo-tiny@beta"]
        assert app.nodes.row_keys == ["n:beta", "d:beta:cpu"]
        await pilot.press("enter")  # keep the filter, back to the table
        assert app.focused is app.models
        assert app.models.row_keys == ["m:demo-tiny", "demo-tiny@beta"]
        await pilot.press("slash", "escape")
        assert len(app.models.row_keys) == 6 and len(app.nodes.row_keys) == 6


async def test_command_palette_offers_the_same_actions():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+p")
        await pilot.press(*"unload qwen")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmScreen)
        assert "qwen2.5-coder-7b" in app.screen.message and "alpha" in app.screen.message


async def test_q_quits():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
        assert not app.is_running
    assert app.return_code == 0


async def test_ctrl_c_quits():
    app = console()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app.is_running


async def test_a_big_fleet_renders_every_row():
    state = FleetState()
    state.apply(SnapshotEvent(synthetic_fleet(32, 8, 4)))
    app = console(state)
    async with app.run_test(size=SIZE) as pilot:
        assert len(app.nodes.row_keys) == 32 * 9
        assert len(app.models.row_keys) == 4 + 32 * 4
        built = app.nodes.rows_built + app.models.rows_built
        state.apply(SnapshotEvent(synthetic_fleet(32, 8, 4, tick=1)))
        app.flush()
        await pilot.pause()
        shown = (
            app.nodes.scrollable_content_region.height + app.models.scrollable_content_region.height
        )
        assert app.nodes.rows_built + app.models.rows_built - built <= shown, "only rows on screen"
        expected = synthetic_fleet(1, 8, 1, tick=1).placements[0].requests_total
        assert cell(app.models, "model-00@node00", "served") == str(expected)


async def test_rows_off_screen_catch_up_when_they_scroll_into_view():
    state = FleetState()
    state.apply(SnapshotEvent(synthetic_fleet(32, 8, 4)))
    app = console(state)
    async with app.run_test(size=SIZE) as pilot:
        last = "model-03@node31"
        busy = Placement(model="model-03", neuron="node31", state="loaded", in_flight=42)
        state.apply(PlacementUpdate(busy))
        app.flush()
        await pilot.pause()
        assert app.models.is_stale(last), "the change waits: the row is off screen"
        assert not app.models.is_stale("m:model-00"), "rows on screen are drawn"
        app.models.move_cursor(row=len(app.models.row_keys) - 1)
        await pilot.pause()
        assert not app.models.is_stale(last)
        assert cell(app.models, last, "in_flight") == "42"
