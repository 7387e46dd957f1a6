"""FleetState: snapshot and events folded in, changes drained, history and summary."""

from __future__ import annotations

from fleets import T0, small_fleet, synthetic_fleet

from cortex.common.fleet import (
    CatalogueEntry,
    CatalogueUpdate,
    FleetNeuron,
    LogEntry,
    LogEvent,
    NeuronUpdate,
    Placement,
    PlacementRemoved,
    PlacementUpdate,
    SnapshotEvent,
)
from cortex.common.neuron import LoadProgress
from cortex.console.state import FleetState


def fed(snapshot=None) -> FleetState:
    state = FleetState()
    state.apply(SnapshotEvent(snapshot or small_fleet()))
    state.take_changes()
    return state


def test_snapshot_replaces_everything_and_marks_a_reset():
    state = FleetState()
    state.apply(SnapshotEvent(small_fleet()))
    assert sorted(state.neurons) == ["alpha", "beta", "gamma"]
    assert set(state.placements) == {
        ("qwen2.5-coder-7b", "alpha"),
        ("llama-3.1-8b", "alpha"),
        ("demo-tiny", "beta"),
    }
    assert sorted(state.catalogue) == ["demo-tiny", "llama-3.1-8b", "qwen2.5-coder-7b"]
    changes = state.take_changes()
    assert changes.reset and changes.fleet
    assert not state.take_changes(), "draining twice gives nothing new"

    # A second snapshot drops what is no longer there.
    smaller = small_fleet()
    smaller.placements = [p for p in smaller.placements if p.neuron == "beta"]
    smaller.neurons = [n for n in smaller.neurons if n.name != "gamma"]
    state.apply(SnapshotEvent(smaller))
    assert sorted(state.neurons) == ["alpha", "beta"]
    assert set(state.placements) == {("demo-tiny", "beta")}


def test_neuron_update_changes_one_neuron():
    state = fed()
    state.apply(NeuronUpdate(FleetNeuron(name="gamma", endpoint="http://10.0.0.3:13131", up=True)))
    assert state.neurons["gamma"].up
    changes = state.take_changes()
    assert changes.neurons == {"gamma"} and not changes.reset and not changes.placements


def test_placement_update_progress_then_loaded():
    state = fed()
    key = ("llama-3.1-8b", "alpha")
    loading = Placement(
        model=key[0],
        neuron=key[1],
        state="loading",
        progress=LoadProgress(stage="loading", done=30, total=32),
    )
    state.apply(PlacementUpdate(loading))
    assert state.placements[key].progress.fraction == 30 / 32
    state.apply(PlacementUpdate(Placement(model=key[0], neuron=key[1], state="loaded")))
    assert state.placements[key].state == "loaded"
    assert state.take_changes().placements == {key}
    assert state.summary().models_loaded == 3 and state.summary().models_loading == 0


def test_new_placement_and_removal():
    state = fed()
    state.apply(PlacementUpdate(Placement(model="demo-tiny", neuron="alpha", state="loading")))
    assert ("demo-tiny", "alpha") in state.placements
    assert ("demo-tiny", "alpha") in state.history
    state.apply(PlacementRemoved(model="demo-tiny", neuron="beta"))
    assert ("demo-tiny", "beta") not in state.placements
    assert ("demo-tiny", "beta") not in state.history
    changes = state.take_changes()
    assert changes.placements == {("demo-tiny", "alpha"), ("demo-tiny", "beta")}
    # Removing what is not there is harmless (a duplicate event after a reconnect).
    state.apply(PlacementRemoved(model="nope", neuron="beta"))


def test_catalogue_update_and_pins():
    state = fed()
    assert state.is_pinned("qwen2.5-coder-7b")
    assert not state.is_pinned("demo-tiny")
    state.apply(CatalogueUpdate([CatalogueEntry(id="demo-tiny", pinned=True, pin_source="api")]))
    assert state.is_pinned("demo-tiny")
    assert list(state.catalogue) == ["demo-tiny"]
    assert state.take_changes().catalogue


def test_log_events_are_kept_in_order_and_bounded():
    state = FleetState(log_size=3)
    for i in range(5):
        state.apply(LogEvent(LogEntry(time=T0 + i, kind="info", message=f"m{i}")))
    assert [e.message for e in state.log] == ["m2", "m3", "m4"]
    assert [e.message for e in state.take_changes().log] == [f"m{i}" for i in range(5)]


def test_history_samples_once_per_period_and_survives_a_snapshot():
    state = fed()
    key = ("qwen2.5-coder-7b", "alpha")
    state.sample(T0)
    state.sample(T0 + 0.5)  # too soon: ignored
    state.sample(T0 + 1.0)
    assert list(state.history[key]) == [84.6, 84.6]
    changes = state.take_changes()
    assert key in changes.history and not changes.placements, "history alone: not a fleet change"
    state.apply(SnapshotEvent(small_fleet()))
    assert list(state.history[key]) == [84.6, 84.6], "a reconnect keeps the history"


def test_history_is_bounded():
    state = FleetState(history=5)
    state.apply(SnapshotEvent(small_fleet()))
    for i in range(20):
        state.sample(T0 + i)
    assert len(state.history[("demo-tiny", "beta")]) == 5


def test_summary_counts_up_neurons_devices_and_activity():
    s = fed().summary()
    assert (s.neurons_up, s.neurons_total) == (2, 3)
    assert (s.gpus, s.cpus) == (2, 1)
    assert s.vram_total == 48 * 1024**3
    assert s.ram_total == 64 * 1024**3
    assert s.tokens_per_s == 84.6 + 12.5
    assert (s.in_flight, s.queued) == (2, 1)
    assert (s.models_loaded, s.models_loading, s.models_available) == (2, 1, 3)


def test_summary_of_a_big_fleet():
    s = fed(synthetic_fleet(32, 8, 4)).summary()
    assert (s.neurons_up, s.gpus, s.models_loaded) == (32, 256, 128)


def test_connection_lifecycle_is_logged_once_per_outage():
    state = FleetState()
    assert state.connection.status == "connecting"
    state.connected(T0)
    assert state.connection.status == "connected" and state.connection.since == T0
    state.disconnected(T0 + 10, "connection refused", retry_in=0.5)
    state.disconnected(T0 + 11, "connection refused", retry_in=1.0)
    c = state.connection
    assert c.status == "reconnecting"
    assert c.since == T0 + 10, "stale since the first failure, not the latest"
    assert c.retry_at == T0 + 12 and c.attempts == 2 and c.error == "connection refused"
    state.connected(T0 + 20)
    messages = [e.message for e in state.take_changes().log]
    assert messages == [
        "lost the gateway's event stream: connection refused",
        "reconnected to the gateway",
    ]


def test_merge_log_adds_only_what_is_missing_oldest_first():
    state = FleetState()
    seen = LogEntry(time=T0 + 5, kind="load", message="loaded a")
    state.add_log(seen)
    history = [
        LogEntry(time=T0 + 5, kind="load", message="loaded a"),  # already here
        LogEntry(time=T0 + 2, kind="neuron_up", message="n is up"),
        LogEntry(time=T0 + 1, kind="info", message="gateway started"),
    ]
    state.merge_log(history)
    assert [e.message for e in state.log] == ["loaded a", "gateway started", "n is up"]
    state.merge_log(history)
    assert len(state.log) == 3, "merging the same history twice adds nothing"
