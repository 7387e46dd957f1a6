"""Neuron and fleet events survive a trip through SSE and decode as their tagged union."""

from __future__ import annotations

import msgspec

from cortex.common.fleet import (
    CatalogueEntry,
    FleetEvent,
    FleetNeuron,
    FleetSnapshot,
    LogEntry,
    LogEvent,
    Placement,
    SnapshotEvent,
)
from cortex.common.neuron import (
    NEURON_EVENT_TAGS,
    Device,
    LoadedModel,
    LoadProgress,
    ModelEvent,
    ModelFile,
    NeuronEvent,
    NodeStatus,
    ProcessMemory,
    StatusEvent,
)
from cortex.common.sse import SSEDecoder, encode_json

GPU = Device(
    id="cuda:0",
    kind="cuda",
    name="NVIDIA H100 80GB HBM3",
    memory_total=85_520_809_984,
    memory_used=12_000_000_000,
    memory_free=73_520_809_984,
    utilization=87.0,
    temperature_c=61.0,
    processes=[ProcessMemory(model="qwen", pid=4242, bytes=11_000_000_000)],
)
LOADING = LoadedModel(
    id="qwen",
    state="loading",
    backend="exllamav2",
    devices=["cuda:0"],
    progress=LoadProgress(stage="loading", done=12, total=48),
)


def through_sse(event, union):
    tag = type(event).__struct_config__.tag
    wire = encode_json(event, tag)
    (decoded,) = SSEDecoder().feed(wire)
    assert decoded.event == tag
    return msgspec.json.decode(decoded.data, type=union)


def test_neuron_events_round_trip():
    status = NodeStatus(
        name="gpu-a",
        version="0.1.0",
        started_at=1.0,
        backends=["transformers", "exllamav2"],
        devices=[GPU],
        available=[ModelFile(id="qwen", path="/m/qwen", format="exl2", size_bytes=4 * 2**30)],
        loaded=[LOADING],
    )
    for event in (StatusEvent(status), ModelEvent(LOADING)):
        assert through_sse(event, NeuronEvent) == event
    assert set(NEURON_EVENT_TAGS) == {
        t.__struct_config__.tag
        for t in NeuronEvent.__args__  # type: ignore[attr-defined]
    }


def test_load_progress_fraction():
    assert LoadProgress(stage="loading", done=12, total=48).fraction == 0.25
    assert LoadProgress(stage="loaded").fraction == 1.0
    assert LoadProgress(stage="starting").fraction == 0.0


def test_fleet_events_round_trip():
    snapshot = FleetSnapshot(
        time=2.0,
        neurons=[FleetNeuron(name="gpu-a", endpoint="http://h:13131", up=True, devices=[GPU])],
        placements=[Placement(model="qwen", neuron="gpu-a", state="loaded", pinned=True)],
        catalogue=[CatalogueEntry(id="qwen", available_on=["gpu-a"], loaded_on=["gpu-a"])],
    )
    for event in (
        SnapshotEvent(snapshot),
        LogEvent(LogEntry(time=3.0, kind="evict", message="evicted", reason="lru")),
    ):
        assert through_sse(event, FleetEvent) == event
