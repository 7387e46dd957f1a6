"""Placement by reported concurrency, end to end: demo-tiny on two real CPU neurons, one
that runs a single sequence at a time and one that batches four, and a real gateway.

Counting requests alone would alternate between the two, so the one-slot neuron would
queue while the batching one had free slots. Counted against each placement's reported
``max_concurrency``, five concurrent streams fill the four slots and the one.
"""

from __future__ import annotations

import pytest
from support.fleets import tiny_everywhere
from support.streams import HeldStreams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("placement-fleet")
    settings = {"single": {"max_concurrency": 1}, "batch": {"max_concurrency": 4}}
    with tiny_everywhere(demo_models, root, settings) as (gateway, _):
        yield gateway


def in_flight(gateway) -> dict[str, int]:
    return {p["neuron"]: p.get("in_flight", 0) for p in gateway.placements("demo-tiny")}


def test_concurrent_streams_fill_each_placements_reported_slots(fleet):
    concurrency = {p["neuron"]: p["max_concurrency"] for p in fleet.placements("demo-tiny")}
    assert concurrency == {"single": 1, "batch": 4}
    held = HeldStreams(fleet.url, "demo-tiny", 5, tag="placement")
    try:
        fleet.wait_for(lambda: sum(in_flight(fleet).values()) == 5, timeout=60)
        assert in_flight(fleet) == {"single": 1, "batch": 4}
        fleet.wait_for(lambda: all(held.chunks), timeout=120)  # every stream is served
    finally:
        held.close()
        fleet.wait_for(lambda: sum(in_flight(fleet).values()) == 0, timeout=60)
