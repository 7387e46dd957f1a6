"""Placement by reported concurrency, end to end: demo-tiny on two real CPU neurons, one
that runs a single sequence at a time and one that batches four, and a real gateway.

Counting requests alone would alternate between the two, so the one-slot neuron would
queue while the batching one had free slots. Counted against each placement's reported
``max_concurrency``, five concurrent streams fill the four slots and the one.
"""

from __future__ import annotations

import shutil

import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron
from support.streams import HeldStreams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fleet(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("placement-fleet")
    concurrency = {"single": 1, "batch": 4}
    for name in concurrency:
        shutil.copytree(demo_models.tiny, root / f"models-{name}" / "demo-tiny")
    with (
        start_neuron(
            root / "models-single",
            root / "single",
            settings={"name": "single", "max_concurrency": concurrency["single"]},
        ) as single,
        start_neuron(
            root / "models-batch",
            root / "batch",
            settings={"name": "batch", "max_concurrency": concurrency["batch"]},
        ) as batch,
        start_gateway(
            root / "gateway", neurons={"single": single.url, "batch": batch.url}
        ) as gateway,
    ):
        gateway.wait_neurons_up()
        for neuron in concurrency:
            loaded = gateway.post("/fleet/models/demo-tiny/load", json={"neuron": neuron})
            assert loaded.status_code == 200, loaded.text
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
