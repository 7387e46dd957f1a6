"""The gateway's request figures (TTFT, tokens, decode rate) come from the neuron's own
``usage`` / ``timings`` where it sends them; from the relayed bytes only where it does not.

The stream is the neuron's real projection of inference events; the Meter records into
the gateway's real metrics registry.
"""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from cortex.services.gateway.activity import RequestBoard
from cortex.services.gateway.hub import EventHub
from cortex.services.gateway.metrics import GatewayMetrics
from cortex.services.gateway.proxy import Meter
from cortex.services.neuron.pipeline.events import Finish, TextDelta
from cortex.services.neuron.pipeline.project import ChatStreamProjector

MODEL = "demo-tiny"
# The neuron saw its first token 0.5 s after the request reached it, and spent 4 s after it.
FINISH = Finish(
    reason="stop",
    prompt_tokens=11,
    completion_tokens=7,
    ttft_ms=500.0,
    decode_tokens_per_s=1.5,
    total_ms=4500.0,
)


def neuron_stream(include_usage: bool) -> list[bytes]:
    projector = ChatStreamProjector(MODEL, "chatcmpl-1", 0, include_usage=include_usage)
    return [
        projector.start(prompt_tokens=11),
        projector.feed(TextDelta("Hello")),
        projector.feed(TextDelta(" there")),
        projector.feed(FINISH),
    ]


def without_figures(chunk: bytes) -> bytes:
    """The same events as a neuron that reports no usage or timings would send them."""
    events = []
    for event in chunk.split(b"\n\n"):
        if event.startswith(b"data: {"):
            body = json.loads(event[6:])
            body.pop("timings", None)
            body.pop("usage", None)
            if not body["choices"]:
                continue
            event = b"data: " + json.dumps(body, separators=(",", ":")).encode()
        if event:
            events.append(event + b"\n\n")
    return b"".join(events)


def measure(chunks: list[bytes], started_ago: float) -> dict[str, float]:
    metrics = GatewayMetrics()
    gateway = SimpleNamespace(metrics=metrics, requests=RequestBoard(EventHub()))
    meter = Meter(gateway, MODEL, "chat", time.perf_counter() - started_ago)
    for chunk in chunks:
        meter.feed(chunk)
    meter.report(200, neuron="alpha")

    def sample(name: str) -> float:
        return metrics.registry.get_sample_value(f"cortex_gateway_{name}", {"model": MODEL}) or 0

    return {
        "ttft": sample("time_to_first_token_seconds_sum"),
        "completion": sample("completion_tokens_total"),
        "prompt": sample("prompt_tokens_total"),
        "rate": sample("decode_tokens_per_second_sum"),
    }


@pytest.mark.parametrize("include_usage", [False, True])
def test_figures_come_from_the_neuron_when_it_sends_them(include_usage):
    figures = measure(neuron_stream(include_usage), started_ago=10.0)
    # 10 s at the gateway, less the neuron's 4 s after its first token.
    assert figures["ttft"] == pytest.approx(6.0, abs=0.5)
    assert figures["completion"] == 7  # the neuron's count, not the two text chunks seen
    assert figures["prompt"] == 11
    assert figures["rate"] == pytest.approx(1.5)  # kept when usage comes in its own chunk


def test_a_neuron_without_figures_is_measured_from_the_bytes():
    figures = measure([without_figures(c) for c in neuron_stream(False)], started_ago=10.0)
    # The first token passed through just now, 10 s after the request arrived.
    assert figures["ttft"] == pytest.approx(10.0, abs=0.5)
    # Counted events, less the role chunk and [DONE]: a rough figure (the finish chunk counts).
    assert figures["completion"] == 3
    assert figures["prompt"] == 0
