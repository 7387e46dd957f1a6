"""``cortex-console --json`` against a real gateway with a real CPU neuron.

Every query and action, the admin token, and refusals carrying the gateway's message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow


def console_json(fleet, *args: str, token: str | None = "", timeout: float = 240):
    """Run ``cortex-console --json ARGS``; ``token=""`` means the fleet's admin token."""
    env = {k: v for k, v in os.environ.items() if k not in ("CORTEX_TOKEN", "CORTEX_GATEWAY")}
    env["CORTEX_GATEWAY"] = fleet.url
    if token is not None:
        env["CORTEX_TOKEN"] = token or fleet.token
    done = subprocess.run(
        [sys.executable, "-m", "cortex.console.cli", "--json", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    out = json.loads(done.stdout) if done.stdout.strip() else None
    err = json.loads(done.stderr)["error"] if done.stderr.strip() else None
    return done.returncode, out, err


def test_status(fleet):
    rc, status, err = console_json(fleet, "status")
    assert (rc, err) == (0, None)
    assert status["gateway"] == fleet.url
    assert status["neurons"] == {"up": 1, "total": 1}
    assert status["devices"] == {"gpus": 0, "cpus": 1}
    assert status["ram"]["total"] > status["ram"]["used"] > 0
    assert status["models"] == {"loaded": 0, "loading": 0, "failed": 0, "catalogue": 3}


def test_nodes(fleet):
    rc, nodes, _ = console_json(fleet, "nodes")
    assert rc == 0
    assert [n["name"] for n in nodes] == ["local"]
    (node,) = nodes
    assert node["up"] is True and node["endpoint"] == fleet.neuron.url
    assert [d["kind"] for d in node["devices"]] == ["cpu"]
    assert node["models"] == []


def test_models(fleet):
    rc, models, _ = console_json(fleet, "models")
    assert rc == 0
    assert sorted(m["id"] for m in models) == ["demo-long", "demo-small", "demo-tiny"]
    for model in models:
        assert model["available_on"] == ["local"]
        assert model["placements"] == []


def test_gpus_lists_every_device_cpu_included(fleet):
    rc, devices, _ = console_json(fleet, "gpus")
    assert rc == 0
    (cpu,) = devices
    fields = (cpu["neuron"], cpu["id"], cpu["kind"], cpu["neuron_up"])
    assert fields == ("local", "cpu", "cpu", True)
    assert 0 < cpu["memory_percent"] < 100


def test_load_pin_unpin_unload(fleet):
    rc, result, err = console_json(fleet, "load", "demo-tiny", "--neuron", "local")
    assert (rc, err) == (0, None)
    assert result["ok"] is True and result["action"] == "load"
    assert [(p["model"], p["neuron"], p["state"]) for p in result["placements"]] == [
        ("demo-tiny", "local", "loaded")
    ]
    rc, models, _ = console_json(fleet, "models")
    tiny = next(m for m in models if m["id"] == "demo-tiny")
    assert [p["state"] for p in tiny["placements"]] == ["loaded"]
    rc, status, _ = console_json(fleet, "status")
    assert status["models"]["loaded"] == 1

    rc, result, _ = console_json(fleet, "pin", "demo-tiny")
    assert rc == 0 and result["ok"] and result["action"] == "pin"
    assert fleet.catalogue("demo-tiny")["pinned"] is True
    rc, result, _ = console_json(fleet, "unpin", "demo-tiny")
    assert rc == 0 and result["action"] == "unpin"
    assert not fleet.catalogue("demo-tiny").get("pinned")

    rc, result, _ = console_json(fleet, "unload", "demo-tiny", "--neuron", "local")
    assert rc == 0 and result["ok"] and result["action"] == "unload"
    assert fleet.placements("demo-tiny") == []


def test_load_without_waiting_returns_while_it_loads(fleet):
    rc, result, _ = console_json(fleet, "load", "demo-small", "--no-wait")
    assert rc == 0 and result["ok"]
    fleet.gateway.wait_for(
        lambda: [p["state"] for p in fleet.placements("demo-small")] == ["loaded"], timeout=180
    )


def test_refused_action_exits_1_with_the_gateways_message(fleet):
    rc, out, err = console_json(fleet, "load", "no-such-model")
    assert rc == 1 and out is None
    assert err["status"] == 404 and err["code"] == "model_not_found"
    assert "no-such-model" in err["message"]

    direct = fleet.gateway.post("/fleet/models/demo-small/unload", json={})
    rc, _, err = console_json(fleet, "unload", "demo-small")
    assert rc == 1 and err["status"] == direct.status_code == 409
    assert err["message"] == direct.json()["error"]["message"]


def test_missing_or_wrong_token_is_refused_with_a_hint(fleet):
    rc, _, err = console_json(fleet, "pin", "demo-tiny", token=None)
    assert rc == 1 and err["status"] == 401
    assert "--token" in err["message"]
    rc, _, err = console_json(fleet, "status", token="not-the-token")
    assert rc == 1 and err["status"] == 401
    assert not fleet.catalogue("demo-tiny").get("pinned")
