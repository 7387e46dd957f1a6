"""A neuron that dies in the middle of a Responses stream: the client gets an ``error``
event and then ``response.failed`` (its own neuron and gateway: this test kills it)."""

from __future__ import annotations

import openai
import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron

pytestmark = pytest.mark.slow


def test_a_neuron_dying_mid_stream_fails_the_response(demo_models, tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / "demo-tiny").symlink_to(demo_models.tiny, target_is_directory=True)
    with (
        start_neuron(models, tmp_path / "neuron") as neuron,
        start_gateway(tmp_path / "gateway", neurons={"n": neuron.url}) as gateway,
    ):
        gateway.wait_neurons_up()
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)
        stream = client.responses.create(
            model="demo-tiny",
            input="Tell a very long story",
            max_output_tokens=1500,
            temperature=0,  # greedy demo-tiny writes past 64 tokens here
            stream=True,
        )
        events = []
        for event in stream:
            events.append(event)
            if event.type == "response.output_text.delta":
                break
        neuron.kill()
        events.extend(stream)
    kinds = [e.type for e in events]
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-2:] == ["error", "response.failed"], kinds[-5:]
    # A reset connection or one closed before the finish: either way the answer is cut.
    assert events[-2].code in ("upstream_failed", "upstream_incomplete"), events[-2]
    failed = events[-1].response
    assert failed.status == "failed" and failed.error.code == "server_error"
    assert [e.sequence_number for e in events] == list(range(len(events)))
