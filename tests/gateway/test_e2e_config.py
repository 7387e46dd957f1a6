"""The gateway's configured behaviour end to end: models.toml profiles and pins, auth at
every layer, the body limit, and API pins that survive a restart.

One real neuron (demo-tiny and demo-small on disk, a token of its own) behind a real
gateway configured with client keys, an admin token, a 64 KiB body limit and a 2 s
idle TTL.
"""

from __future__ import annotations

import json

import anthropic
import openai
import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron

pytestmark = pytest.mark.slow

CLIENT_KEY = "client-key-1"
ADMIN = "admin-token-1"
NEURON_TOKEN = "neuron-secret-1"
MODELS = [{"id": "pinned-tiny", "path": "demo-tiny", "pin": True, "max_seq_len": 1024}]
CONFIG = {
    "gateway": {"max_body_bytes": "64KiB"},
    "eviction": {"idle_ttl_s": 2.0, "sweep_interval_s": 0.5},
    "auth": {"api_keys": [CLIENT_KEY], "admin_token": ADMIN, "neuron_token": NEURON_TOKEN},
}


@pytest.fixture(scope="module")
def neuron(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("gateway-config")
    models = root / "models"
    models.mkdir()
    (models / "demo-tiny").symlink_to(demo_models.tiny, target_is_directory=True)
    (models / "demo-small").symlink_to(demo_models.small, target_is_directory=True)
    with start_neuron(models, root / "neuron", token=NEURON_TOKEN) as neuron:
        yield neuron


@pytest.fixture(scope="module")
def gateway(neuron, tmp_path_factory):
    work = tmp_path_factory.mktemp("gateway")
    with start_gateway(
        work, neurons={"n": neuron.url}, models=MODELS, config=CONFIG, token=ADMIN
    ) as gateway:
        gateway.wait_neurons_up()  # only possible if the gateway sends the neuron's token
        yield gateway


def oai(gateway, key: str = CLIENT_KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def claude(gateway, key: str = CLIENT_KEY) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=key, max_retries=0)


def test_a_profile_pinned_in_models_toml_is_loaded_at_start_under_its_own_id(gateway, neuron):
    gateway.wait_for(lambda: any(p["state"] == "loaded" for p in gateway.placements("pinned-tiny")))
    loaded = neuron.loaded("pinned-tiny")
    assert loaded["path"].endswith("demo-tiny") and loaded["max_seq_len"] == 1024
    cards = {m.id: m.model_extra["cortex"] for m in oai(gateway).models.list().data}
    assert "demo-tiny" not in cards  # the profile claims that folder
    assert cards["pinned-tiny"]["state"] == "loaded" and cards["pinned-tiny"]["pinned"]
    reply = oai(gateway).chat.completions.create(
        model="pinned-tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=3
    )
    assert reply.model == "pinned-tiny"
    refused = gateway.post("/fleet/models/pinned-tiny/unpin")
    assert refused.status_code == 409
    assert "models.toml" in refused.json()["error"]["message"]


def test_client_keys_guard_the_v1_routes_in_each_dialect(gateway):
    with pytest.raises(openai.AuthenticationError) as caught:
        oai(gateway, key="wrong").models.list()
    assert caught.value.body["code"] == "invalid_api_key"
    assert [m.id for m in oai(gateway).models.list().data]
    with pytest.raises(anthropic.AuthenticationError) as caught_a:
        claude(gateway, key="wrong").messages.count_tokens(
            model="pinned-tiny", messages=[{"role": "user", "content": "x"}]
        )
    assert caught_a.value.body["error"]["type"] == "authentication_error"
    counted = claude(gateway).messages.count_tokens(
        model="pinned-tiny", messages=[{"role": "user", "content": "x"}]
    )
    assert counted.input_tokens > 0


def test_fleet_actions_need_the_admin_token_and_reads_accept_a_client_key(gateway):
    with gateway.client(token=CLIENT_KEY) as client:
        assert client.get("/fleet").status_code == 200
        refused = client.post("/fleet/models/demo-small/pin")
        assert refused.status_code == 401
        assert refused.json()["error"]["code"] == "admin_token_required"
    with gateway.client(token="") as anonymous:
        assert anonymous.get("/fleet").status_code == 401
        assert anonymous.get("/health").status_code == 200
    with gateway.client(token=ADMIN) as admin:
        missing = admin.post("/fleet/models/no-such-model/load")
        assert missing.status_code == 404 and "no-such-model" in missing.json()["error"]["message"]
        bad = admin.post("/fleet/models/demo-small/load", json={"neuron": 5})
        assert bad.status_code == 400 and "neuron" in bad.json()["error"]["message"]


def test_bodies_over_the_limit_are_refused_with_413_in_each_dialect(gateway):
    big = "x" * (70 * 1024)
    with pytest.raises(openai.APIStatusError) as caught:
        oai(gateway).chat.completions.create(
            model="pinned-tiny", messages=[{"role": "user", "content": big}], max_tokens=1
        )
    assert caught.value.status_code == 413
    assert "gateway.max_body_bytes" in caught.value.message
    with pytest.raises(anthropic.APIStatusError) as caught_a:
        claude(gateway).messages.create(
            model="pinned-tiny", max_tokens=1, messages=[{"role": "user", "content": big}]
        )
    assert caught_a.value.status_code == 413
    assert caught_a.value.body["error"]["type"] == "request_too_large"


def test_count_tokens_loads_nothing_and_idle_models_unload_after_the_ttl(gateway, neuron):
    counted = claude(gateway).messages.count_tokens(
        model="demo-small", messages=[{"role": "user", "content": "How many tokens?"}]
    )
    assert counted.input_tokens > 0
    assert not gateway.placements("demo-small")  # counted with the tokenizer on disk
    oai(gateway).chat.completions.create(
        model="demo-small", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert neuron.loaded("demo-small")["state"] == "loaded"
    gateway.wait_for(lambda: neuron.loaded("demo-small") is None, timeout=30)
    logs = gateway.get("/fleet/logs").json()
    assert any(
        e["kind"] == "evict" and e["model"] == "demo-small" and e["reason"] == "idle_ttl"
        for e in logs
    )
    assert neuron.loaded("pinned-tiny")["state"] == "loaded"  # pinned: never idle-unloaded


def test_api_pins_survive_a_gateway_restart(gateway, neuron):
    pinned = gateway.post("/fleet/models/demo-small/pin")
    assert pinned.status_code == 200 and pinned.json()["ok"]
    state = json.loads((gateway.work_dir / "gateway-state.json").read_text())
    assert state["pins"] == ["demo-small"]
    gateway.stop()
    with start_gateway(
        gateway.work_dir, neurons={"n": neuron.url}, models=MODELS, config=CONFIG, token=ADMIN
    ) as again:
        again.wait_neurons_up()
        catalogue = {c["id"]: c for c in again.fleet()["catalogue"]}
        assert catalogue["demo-small"]["pinned"]
        assert catalogue["demo-small"]["pin_source"] == "api"
        assert catalogue["pinned-tiny"]["pin_source"] == "config"
        assert again.post("/fleet/models/demo-small/unpin").json()["ok"]
        after = {c["id"]: c for c in again.fleet()["catalogue"]}
        assert not after["demo-small"].get("pinned", False)
