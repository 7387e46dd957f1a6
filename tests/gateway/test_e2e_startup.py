"""A gateway that starts before its neurons (systemd starts them in any order).

Until a neuron has answered, the gateway cannot know its models: a request then gets a
retryable 503 that says so, not a 404 claiming the model does not exist; and the gateway
serves as soon as the neuron comes up.
"""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron
from support.ports import free_port

pytestmark = pytest.mark.slow

HELLO = [{"role": "user", "content": "Hello"}]


def test_before_any_neuron_answers_requests_get_a_retryable_503_then_are_served(
    demo_models, tmp_path
):
    port = free_port()
    with start_gateway(tmp_path / "gateway", neurons={"late": f"http://127.0.0.1:{port}"}) as gw:
        oai = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            oai.chat.completions.create(model="demo-tiny", messages=HELLO, max_tokens=2)
        assert caught.value.status_code == 503
        assert caught.value.code == "neurons_not_ready"
        assert "late" in caught.value.message and "demo-tiny" in caught.value.message
        assert caught.value.response.headers["retry-after"] == "2"

        claude = anthropic.Anthropic(base_url=gw.url, api_key="x", max_retries=0)
        with pytest.raises(anthropic.APIStatusError) as caught_a:
            claude.messages.create(model="demo-tiny", max_tokens=2, messages=HELLO)
        assert caught_a.value.status_code == 503
        assert caught_a.value.body["type"] == "error"
        assert "No neuron has answered" in caught_a.value.body["error"]["message"]

        loading = httpx.post(gw.url + "/fleet/models/demo-tiny/load", json={}, timeout=10)
        assert loading.status_code == 503, loading.text

        with start_neuron(demo_models.root, tmp_path / "neuron", port=port):
            gw.wait_neurons_up()
            reply = oai.chat.completions.create(model="demo-tiny", messages=HELLO, max_tokens=2)
            assert reply.usage.completion_tokens >= 1


def test_an_unknown_model_is_404_naming_the_neurons_not_reached_yet(demo_models, tmp_path):
    with (
        start_neuron(demo_models.root, tmp_path / "neuron") as neuron,
        start_gateway(
            tmp_path / "gateway",
            neurons={"a": neuron.url, "ghost": f"http://127.0.0.1:{free_port()}"},
        ) as gw,
    ):
        gw.wait_neurons_up(["a"])
        oai = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.NotFoundError) as caught:
            oai.chat.completions.create(model="no-such-model", messages=HELLO, max_tokens=2)
        assert caught.value.code == "model_not_found"
        assert "demo-tiny" in caught.value.message  # what neuron a has
        assert "not counted: neurons ghost" in caught.value.message
