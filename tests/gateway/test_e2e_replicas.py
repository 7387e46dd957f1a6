"""Replicas end to end: two real CPU neurons, a real gateway, small scaling windows.

Each neuron has demo-tiny; B also has tiny-x (a copy). Each budget holds one CPU worker,
so a second replica of demo-tiny on B needs tiny-x gone. demo-tiny runs one sequence at
a time (``max_concurrency = 1``), so three held streams put two requests in its queue:
pressure above ``queue_depth = 1``. The tests share the fleet and run in file order;
each says what state it leaves.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import httpx
import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron
from support.streams import HeldStreams

from cortex.common.sse import iter_events

pytestmark = pytest.mark.slow

BUDGET = "600MiB"  # one demo-tiny worker (~370 MB RSS), not two
REPLICAS = {
    "queue_depth": 1,
    "queue_wait_s": 30.0,
    "window_s": 1.0,
    "idle_s": 3.0,
    "interval_s": 0.25,
}
MODELS = [{"id": "demo-tiny", "max_concurrency": 1, "replicas": {"max": 2}}]


@pytest.fixture(scope="module")
def fleet(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("replicas-fleet")
    models_a, models_b = root / "models-a", root / "models-b"
    shutil.copytree(demo_models.tiny, models_a / "demo-tiny")
    shutil.copytree(demo_models.tiny, models_b / "demo-tiny")
    shutil.copytree(demo_models.tiny, models_b / "tiny-x")
    settings = {"memory_budget": BUDGET, "max_concurrency": 1}
    with (
        start_neuron(models_a, root / "a", settings={"name": "a", **settings}) as a,
        start_neuron(models_b, root / "b", settings={"name": "b", **settings}) as b,
    ):
        neurons = {"a": a.url, "b": b.url}

        def gateway():
            return start_gateway(
                root / "gateway", neurons=neurons, models=MODELS, config={"replicas": REPLICAS}
            )

        with gateway() as first:
            first.wait_neurons_up()
            yield type("Fleet", (), {"a": a, "b": b, "gateway": first, "restart": gateway})


def on(gateway, model: str) -> set[str]:
    return {p["neuron"] for p in gateway.placements(model) if p["state"] == "loaded"}


def replica_logs(gateway, model: str) -> list[str]:
    logs = gateway.get("/fleet/logs").json()
    return [e["message"] for e in logs if e["kind"] == "replicas" and e.get("model") == model]


def decisions(gateway, **labels) -> float:
    total = 0.0
    for line in gateway.metrics().splitlines():
        if line.startswith("cortex_gateway_replica_decisions_total{") and all(
            f'{k}="{v}"' in line for k, v in labels.items()
        ):
            total += float(line.rsplit(" ", 1)[1])
    return total


def replicas_of(gateway, model: str) -> dict:
    entry = next(c for c in gateway.fleet()["catalogue"] if c["id"] == model)
    return entry["replicas"]


def test_no_scale_up_when_the_only_room_is_a_pinned_model(fleet):
    gateway = fleet.gateway
    assert gateway.post("/fleet/models/tiny-x/load", json={"neuron": "b"}).status_code == 200
    assert gateway.post("/fleet/models/tiny-x/pin").json()["ok"]
    assert gateway.post("/fleet/models/demo-tiny/load", json={"neuron": "a"}).status_code == 200
    streams = HeldStreams(gateway.url, "demo-tiny", 3)
    try:
        gateway.wait_for(
            lambda: any(
                "not scaling demo-tiny up" in m for m in replica_logs(gateway, "demo-tiny")
            ),
            timeout=30,
        )
        refusal = next(m for m in replica_logs(gateway, "demo-tiny") if "not scaling" in m)
        assert "queue_depth" in refusal and "pinned there: tiny-x" in refusal, refusal
        assert decisions(gateway, model="demo-tiny", direction="up", outcome="not_taken") >= 1
        status = replicas_of(gateway, "demo-tiny")
        assert (status["actual"], status["wanted"], status["max"]) == (1, 2, 2)
        assert status["queue_depth"] >= 2
    finally:
        streams.close()
    assert on(gateway, "demo-tiny") == {"a"} and on(gateway, "tiny-x") == {"b"}
    # Leaves: demo-tiny on A, tiny-x on B, pinned.


def test_no_scale_up_when_the_only_room_is_a_busy_model(fleet):
    gateway = fleet.gateway
    assert gateway.post("/fleet/models/tiny-x/unpin").json()["ok"]
    busy = HeldStreams(gateway.url, "tiny-x", 1)
    gateway.wait_for(lambda: busy.chunks[0] > 0, timeout=30)
    streams = HeldStreams(gateway.url, "demo-tiny", 3)
    try:
        gateway.wait_for(
            lambda: any(
                "not scaling" in m and "fits only after models that are busy" in m
                for m in replica_logs(gateway, "demo-tiny")
            ),
            timeout=30,
        )
        assert on(gateway, "demo-tiny") == {"a"}
    finally:
        streams.close()
        busy.close()
    # Leaves: demo-tiny on A, tiny-x on B, idle and unpinned.


def test_queue_pressure_scales_up_on_the_other_neuron_and_the_replica_serves(fleet):
    gateway = fleet.gateway

    def taken() -> list[str]:
        logs = replica_logs(gateway, "demo-tiny")
        return [m for m in logs if m.startswith("scaling demo-tiny up")]

    def b_serves() -> bool:
        placement = fleet.b.loaded("demo-tiny")
        return bool(placement and (placement.get("requests_total") or placement.get("in_flight")))

    streams = HeldStreams(gateway.url, "demo-tiny", 3)
    try:
        gateway.wait_for(taken, timeout=60)
        assert "loading on b" in taken()[-1] and "evicting tiny-x" in taken()[-1], taken()
        assert "queue_depth" in taken()[-1]
        assert decisions(gateway, model="demo-tiny", direction="up", outcome="taken") == 1
        gateway.wait_for(lambda: on(gateway, "demo-tiny") == {"a", "b"}, timeout=180)
        assert on(gateway, "tiny-x") == set()  # idle and unpinned: it made room
        # The streams keep coming; the new replica takes its share (least in flight).
        fleet.b.wait_for(b_serves, timeout=60)
        status = replicas_of(gateway, "demo-tiny")
        assert (status["actual"], status["wanted"]) == (2, 2)
    finally:
        streams.close()
    # Leaves: demo-tiny on A and B.


def test_an_idle_extra_replica_is_scaled_down(fleet):
    gateway = fleet.gateway
    gateway.wait_for(lambda: len(on(gateway, "demo-tiny")) == 1, timeout=90)
    down = [m for m in replica_logs(gateway, "demo-tiny") if m.startswith("scaling demo-tiny down")]
    assert down and "idle" in down[-1], down
    assert decisions(gateway, model="demo-tiny", direction="down", reason="idle") == 1
    assert replicas_of(gateway, "demo-tiny")["actual"] == 1
    # Leaves: demo-tiny on one neuron.


def test_replicas_set_from_the_cli_survive_a_restart_and_min_loads_at_start(fleet):
    gateway = fleet.gateway
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "cortex.console.cli",
            "--gateway",
            gateway.url,
            "--json",
            "replicas",
            "demo-tiny",
            "2",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["ok"] and result["replicas"]["min"] == 2 and result["replicas"]["source"] == "api"
    bad = gateway.post("/fleet/models/demo-tiny/replicas", json={"min": 3, "max": 2})
    assert bad.status_code == 400 and "min" in bad.json()["error"]["message"]
    gateway.wait_for(lambda: on(gateway, "demo-tiny") == {"a", "b"}, timeout=180)
    gateway.stop()
    for neuron in (fleet.a, fleet.b):
        neuron.unload("demo-tiny")
    with fleet.restart() as again:
        again.wait_neurons_up()
        status = replicas_of(again, "demo-tiny")
        assert (status["min"], status["max"], status["source"]) == (2, 2, "api")
        again.wait_for(lambda: on(again, "demo-tiny") == {"a", "b"}, timeout=240)
        assert any("min" in m for m in replica_logs(again, "demo-tiny"))
        # The event stream carries the catalogue's replicas for the console.
        with httpx.stream("GET", again.url + "/fleet/events", timeout=10) as response:
            first = next(iter_events(response.iter_bytes()))
        entry = next(c for c in first.json()["snapshot"]["catalogue"] if c["id"] == "demo-tiny")
        assert entry["replicas"]["actual"] == 2
