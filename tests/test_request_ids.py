"""Logs fit for journald: one line per request on each daemon, joined by the request id."""

from __future__ import annotations

import httpx
import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron

pytestmark = pytest.mark.slow


def test_a_request_id_follows_the_request_from_gateway_to_neuron(demo_models, tmp_path):
    with (
        start_neuron(demo_models.root, tmp_path / "neuron") as neuron,
        start_gateway(tmp_path / "gateway", neurons={"a": neuron.url}) as gateway,
    ):
        gateway.wait_neurons_up()
        body = {
            "model": "demo-tiny",
            "max_tokens": 3,
            "messages": [{"role": "user", "content": "hi"}],
        }
        given = httpx.post(
            gateway.url + "/v1/chat/completions",
            json=body,
            headers={"x-request-id": "trace-me-42"},
            timeout=120,
        )
        generated = httpx.post(gateway.url + "/v1/chat/completions", json=body, timeout=120)
        gateway_log, neuron_log = gateway.log_text(), neuron.log_text()
    assert given.headers["x-request-id"] == "trace-me-42"
    new_id = generated.headers["x-request-id"]
    assert new_id and new_id != "trace-me-42"
    for request_id, response in (("trace-me-42", given), (new_id, generated)):
        (gateway_line,) = [line for line in gateway_log.splitlines() if request_id in line]
        (neuron_line,) = [line for line in neuron_log.splitlines() if request_id in line]
        assert "model=demo-tiny" in gateway_line and "status=200" in gateway_line
        # Sampling may end the turn early, so the log must match what the client was told.
        completion_tokens = response.json()["usage"]["completion_tokens"]
        assert "model=demo-tiny" in neuron_line
        assert f"completion={completion_tokens} " in neuron_line
