"""A placement record takes its neuron's figures, the engine's prefix cache included."""

from __future__ import annotations

import msgspec

from cortex.common.fleet import Placement
from cortex.common.neuron import LoadedModel, PrefixCacheStatus
from cortex.services.gateway.state import PlacementRecord


def test_prefix_cache_and_forwards_reach_the_fleet_wire():
    loaded = LoadedModel(
        id="m",
        state="loaded",
        backend="transformers",
        devices=["cpu"],
        max_concurrency=4,
        forwards_total=120,
        prefix_cache=PrefixCacheStatus(1 << 30, 5 << 20, 3, 10, 7, 4096),
    )
    record = PlacementRecord("m", "a", "loading", 1)
    record.apply(loaded)
    wire = msgspec.json.decode(msgspec.json.encode(record.to_wire(False, 0, 9)), type=Placement)
    assert wire.max_concurrency == 4 and wire.forwards_total == 120
    assert wire.affinity_prefixes == 9
    assert wire.prefix_cache is not None
    assert (wire.prefix_cache.hits, wire.prefix_cache.lookups) == (7, 10)
    assert wire.prefix_cache.cached_tokens == 4096 and wire.prefix_cache.size_bytes == 5 << 20


def test_a_neuron_without_a_prefix_cache_reports_none():
    record = PlacementRecord("m", "a", "loading", 1)
    record.apply(LoadedModel(id="m", state="loaded", backend="transformers", devices=["cpu"]))
    assert record.prefix_cache is None and record.forwards_total == 0
