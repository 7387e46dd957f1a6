"""What the table cells say: load progress, states, meters and log lines."""

from __future__ import annotations

from fleets import T0

from cortex.common.fleet import LogEntry, Placement
from cortex.common.neuron import LoadProgress
from cortex.console.format import Thresholds
from cortex.console.widgets import cells


def loading(progress: LoadProgress | None) -> Placement:
    return Placement(model="m", neuron="n", state="loading", progress=progress)


def test_loading_with_module_counts_draws_a_bar():
    text = cells.placement_state(loading(LoadProgress(stage="loading", done=8, total=32)), 8)
    assert text.plain == "██░░░░░░  25%"


def test_loading_without_counts_names_the_stage():
    assert cells.placement_state(loading(LoadProgress(stage="queued"))).plain == "◌ queued"
    assert cells.placement_state(loading(None)).plain == "◌ loading"


def test_other_states():
    failed = Placement(model="m", neuron="n", state="failed", error="out of memory")
    assert cells.placement_state(failed).plain == "failed out of memory"
    loaded = Placement(model="m", neuron="n", state="loaded")
    assert cells.placement_state(loaded).plain == "loaded"


def test_meter_colour_follows_the_thresholds():
    thresholds = Thresholds(50, 80)
    assert cells.meter(1, 4, thresholds, width=4).plain == "█░░░  25%"
    styles = [cells.meter(used, 10, thresholds).style for used in (2, 6, 9)]
    assert styles == ["green", "yellow", "bold red"]
    assert cells.meter(0, 0, thresholds).plain == "-"


def test_log_line_shows_the_eviction_reason_once():
    evict = LogEntry(time=T0, kind="evict", message="evicted a from n", reason="lru")
    assert cells.log_line(evict).plain.endswith("evicted a from n (reason: lru)")
    said = LogEntry(time=T0, kind="evict", message="evicted a (lru)", reason="lru")
    assert "reason:" not in cells.log_line(said).plain
