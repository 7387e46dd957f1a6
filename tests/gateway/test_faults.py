"""Fault injection with real processes: a real neuron, a real gateway, real clients, and a
TCP fault proxy (``support.faults``) between the gateway and the neuron for the faults
that live on the wire.

For each fault: the client gets an error in its own dialect within a stated bound,
``in_flight`` and ``queued`` return to 0 at the gateway and the neuron, and the next
request succeeds. The tests share one fleet and leave it healthy; timeouts are small
(``read_timeout_s`` 6 s; health: a beat every 0.5 s, 1 s to answer, down after 2 missed).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from support.faults import FaultProxy
from support.gateway import start_gateway
from support.neuron import start_neuron
from support.streams import NO_EOS

pytestmark = pytest.mark.slow

READ_TIMEOUT_S = 6.0
# Health marks a silent neuron down after 2 missed beats of 1 s each, polled every 0.5 s.
HEALTH_WINDOW_S = 2 * (1.0 + 0.5)
SLACK_S = 3.0  # a loaded 2-core CI machine
HELLO = [{"role": "user", "content": "Tell me a long story."}]
GATEWAY_CONFIG = {
    "gateway": {"read_timeout_s": READ_TIMEOUT_S, "load_timeout_s": 60.0},
    "health": {"interval_s": 0.5, "missed_beats": 2, "timeout_s": 1.0},
}


class Fleet:
    """One neuron (through the fault proxy) and one gateway; restartable in place."""

    def __init__(self, demo_models, root) -> None:
        self.demo_models = demo_models
        self.root = root
        self.stack = contextlib.ExitStack()
        self.neuron = self.stack.enter_context(self._start_neuron())
        self.proxy = self.stack.enter_context(FaultProxy(self.neuron.port))
        self.gateway = self._start_gateway()
        self.neuron.load("demo-tiny")
        self.gateway.wait_for(lambda: self.loaded("demo-tiny"), timeout=30)

    def _start_neuron(self, port: int | None = None):
        return start_neuron(
            self.demo_models.root,
            self.root / "neuron",
            settings={"name": "n", "max_concurrency": 4, "default_max_seq_len": 16384},
            port=port,
        )

    def _start_gateway(self):
        context = start_gateway(
            self.root / "gateway", neurons={"n": self.proxy.url}, config=GATEWAY_CONFIG
        )
        self._gateway_context = context
        gateway = context.__enter__()
        gateway.wait_neurons_up()
        return gateway

    def restart_gateway(self) -> None:
        self._gateway_context.__exit__(None, None, None)
        self.gateway = self._start_gateway()

    def restart_neuron(self) -> None:
        port = self.neuron.port
        self.neuron.stop()
        self.neuron = self.stack.enter_context(self._start_neuron(port))

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._gateway_context.__exit__(None, None, None)
        self.stack.close()

    # ------------------------------------------------------------------ reads

    def loaded(self, model: str) -> bool:
        return any(
            p["model"] == model and p["state"] == "loaded" for p in self.gateway.placements()
        )

    def busy(self) -> list[str]:
        """Everything still counted in flight or queued, at the gateway and the neuron."""
        found = [
            f"gateway {p['model']}: in_flight={p.get('in_flight')} queued={p.get('queued')}"
            for p in self.gateway.placements()
            if p.get("in_flight") or p.get("queued")
        ]
        for model in self.neuron.status()["loaded"]:
            if model.get("in_flight") or model.get("queued"):
                found.append(
                    f"neuron {model['id']}: {model.get('in_flight')}/{model.get('queued')}"
                )
        return found

    def wait_settled(self, timeout: float = 10.0) -> None:
        """in_flight and queued back to 0 everywhere, and the next request succeeds."""
        self.gateway.wait_for(lambda: not self.busy(), timeout=timeout)
        self.assert_serves()

    def assert_serves(self, model: str = "demo-tiny") -> None:
        oai = openai.OpenAI(base_url=self.gateway.url + "/v1", api_key="x", max_retries=0)
        answer = oai.chat.completions.create(
            model=model, messages=HELLO, max_tokens=3, logit_bias=NO_EOS, timeout=120
        )
        assert answer.choices[0].finish_reason == "length"
        assert answer.usage.completion_tokens == 3

    def worker_pid(self, model: str) -> int:
        found = self.neuron.loaded(model)
        assert found is not None and found.get("pid"), found
        return found["pid"]


@pytest.fixture(scope="module")
def fleet(demo_models, tmp_path_factory) -> Iterator[Fleet]:
    running = Fleet(demo_models, tmp_path_factory.mktemp("faults"))
    try:
        yield running
    finally:
        running.close()


def chat_body(stream: bool = True, **extra) -> dict:
    return {
        "model": "demo-tiny",
        "messages": HELLO,
        "max_tokens": 1000,
        "logit_bias": NO_EOS,
        "stream": stream,
        **extra,
    }


@contextlib.contextmanager
def openai_stream(fleet: Fleet, body: dict | None = None, timeout: float = 60.0):
    with (
        httpx.Client(timeout=timeout) as client,
        client.stream(
            "POST", fleet.gateway.url + "/v1/chat/completions", json=body or chat_body()
        ) as response,
    ):
        yield response


def data_events(lines: Iterator[str]) -> Iterator[str]:
    for line in lines:
        if line.startswith("data: "):
            yield line[6:]


def read_until_content(events: Iterator[str], count: int = 2) -> None:
    seen = 0
    while seen < count:
        if '"content"' in next(events):
            seen += 1


def assert_ends_with_error_then_done(events: Iterator[str], bound: float) -> dict:
    """The rest of an OpenAI stream: an error event, then ``[DONE]``, within ``bound``."""
    started = time.monotonic()
    rest = list(events)
    took = time.monotonic() - started
    assert took < bound, f"the error took {took:.1f}s (bound {bound:.1f}s)"
    assert rest[-1] == "[DONE]", rest[-3:]
    error = json.loads(rest[-2])
    assert "error" in error, rest[-3:]
    return error["error"]


@contextlib.contextmanager
def stopped(pid: int):
    """The process frozen (SIGSTOP) for the block; always resumed after."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_neuron_back(fleet: Fleet) -> None:
    fleet.gateway.wait_neurons_up(timeout=30)
    fleet.gateway.wait_for(lambda: fleet.loaded("demo-tiny"), timeout=30)


# --------------------------------------------------------------------------- the lease


def test_a_stream_that_succeeds_or_is_refused_gives_its_lease_back(fleet):
    with openai_stream(fleet, chat_body(max_tokens=5)) as response:
        assert response.status_code == 200
        assert list(data_events(response.iter_lines()))[-1] == "[DONE]"
    with openai_stream(fleet, chat_body(max_tokens=10_000_000)) as response:
        assert response.status_code == 400, response.read()
        assert "error" in json.loads(response.read())
    fleet.wait_settled()


# --------------------------------------------------------------------------- stalls


def test_a_neuron_stalled_before_the_head_fails_the_request_within_the_health_window(fleet):
    """It accepts connections but answers nothing: once health marks it down the request
    is retried elsewhere (there is nowhere else here) and fails with a 503."""
    with stopped(fleet.neuron.process.pid):
        started = time.monotonic()
        with openai_stream(fleet) as response:
            response.read()
        took = time.monotonic() - started
        assert response.status_code == 503, response.text
        assert "error" in response.json()
        assert took < HEALTH_WINDOW_S + SLACK_S, f"took {took:.1f}s"
    wait_neuron_back(fleet)
    fleet.wait_settled()


def test_a_neuron_stalled_mid_stream_ends_the_stream_with_an_error_event(fleet):
    with openai_stream(fleet) as response:
        assert response.status_code == 200
        events = data_events(response.iter_lines())
        read_until_content(events)
        with stopped(fleet.neuron.process.pid):
            error = assert_ends_with_error_then_done(events, HEALTH_WINDOW_S + SLACK_S)
            assert error["code"] == "upstream_failed"
    wait_neuron_back(fleet)
    fleet.wait_settled()


def test_no_answer_within_the_read_timeout_is_a_504(fleet):
    fleet.proxy.arm("stall")
    started = time.monotonic()
    with openai_stream(fleet) as response:
        response.read()
    took = time.monotonic() - started
    assert response.status_code == 504, response.text
    assert response.json()["error"]["code"] == "upstream_timeout"
    assert READ_TIMEOUT_S - 0.5 < took < READ_TIMEOUT_S + SLACK_S
    fleet.wait_settled()


# --------------------------------------------------------------------------- the wire


@pytest.mark.parametrize("stream", [True, False], ids=["stream", "whole"])
def test_a_neuron_answering_malformed_http_is_a_502(fleet, stream):
    fleet.proxy.arm("malformed")
    with openai_stream(fleet, chat_body(stream=stream, max_tokens=5)) as response:
        response.read()
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "upstream_failed"
    fleet.wait_settled()


@pytest.mark.parametrize("kind", ["truncate", "reset"])
def test_a_connection_closed_mid_chunk_ends_the_stream_with_an_error_event(fleet, kind):
    fleet.proxy.arm(kind, after=900)  # past the head, inside a chunk of the body
    with openai_stream(fleet) as response:
        assert response.status_code == 200
        error = assert_ends_with_error_then_done(data_events(response.iter_lines()), SLACK_S)
    assert error["code"] in ("upstream_failed", "upstream_incomplete")
    fleet.wait_settled()


def test_a_connection_closed_mid_chunk_is_an_anthropic_error_event(fleet):
    fleet.proxy.arm("truncate", after=900)
    claude = anthropic.Anthropic(base_url=fleet.gateway.url, api_key="x", max_retries=0)
    started = time.monotonic()
    with (
        pytest.raises(anthropic.APIStatusError) as raised,
        claude.messages.stream(
            model="demo-tiny", max_tokens=1000, messages=HELLO, timeout=30
        ) as stream,
    ):
        for _ in stream:
            pass
    assert time.monotonic() - started < SLACK_S + 2
    assert raised.value.body["type"] == "error"
    fleet.wait_settled()


# --------------------------------------------------------------------------- clients leaving


def test_a_client_leaving_while_the_head_is_awaited_frees_the_lease_at_once(fleet):
    fleet.proxy.arm("stall")
    with httpx.Client(timeout=0.5) as client, contextlib.suppress(httpx.ReadTimeout):
        client.post(fleet.gateway.url + "/v1/chat/completions", json=chat_body())
    # Well before the read timeout would have ended it.
    fleet.gateway.wait_for(lambda: not fleet.busy(), timeout=READ_TIMEOUT_S - 1.5)
    fleet.wait_settled()


def test_a_client_leaving_mid_stream_frees_everything(fleet):
    with openai_stream(fleet) as response:
        read_until_content(data_events(response.iter_lines()))
    fleet.wait_settled(timeout=5)


def test_a_client_leaving_while_waiting_for_a_cold_load(fleet):
    body = chat_body(model="demo-small")
    with openai_stream(fleet, body) as response:
        assert response.status_code == 200
        assert next(response.iter_lines()) == ": ping"  # waiting for the load
    fleet.wait_settled()
    fleet.gateway.wait_for(lambda: fleet.loaded("demo-small"), timeout=120)
    fleet.assert_serves("demo-small")
    assert fleet.gateway.post("/fleet/models/demo-small/unload").status_code == 200


# --------------------------------------------------------------------------- worker crashes


def test_a_worker_killed_during_decode(fleet):
    with openai_stream(fleet) as response:
        events = data_events(response.iter_lines())
        read_until_content(events)
        os.kill(fleet.worker_pid("demo-tiny"), signal.SIGKILL)
        assert_ends_with_error_then_done(events, SLACK_S)
    fleet.wait_settled(timeout=120)  # the next request loads it again


def test_a_worker_killed_during_prefill(fleet):
    fleet.assert_serves("demo-long")
    long_prompt = "the quick brown fox jumps over the lazy dog. " * 500  # ~8,500 tokens
    body = chat_body(model="demo-long", messages=[{"role": "user", "content": long_prompt}])
    with openai_stream(fleet, body) as response:
        assert response.status_code == 200
        events = data_events(response.iter_lines())
        assert '"role"' in next(events)  # accepted; its prefill takes seconds on a CPU
        os.kill(fleet.worker_pid("demo-long"), signal.SIGKILL)
        rest = list(events)
    assert rest[-1] == "[DONE]" and "error" in json.loads(rest[-2]), rest[-3:]
    assert not any('"content":"' in event for event in rest), "tokens before the kill"
    fleet.wait_settled(timeout=120)


def test_a_worker_killed_during_its_load(fleet):
    model = "demo-small"
    outcome: dict = {}

    def ask() -> None:
        with openai_stream(fleet, chat_body(model=model, max_tokens=3)) as response:
            outcome["status"] = response.status_code
            outcome["events"] = list(data_events(response.iter_lines()))

    asker = threading.Thread(target=ask)
    started = time.monotonic()
    asker.start()

    def loading_pid() -> int | None:
        found = fleet.neuron.loaded(model)
        return found.get("pid") if found and found["state"] == "loading" else None

    os.kill(fleet.neuron.wait_for(loading_pid, timeout=30), signal.SIGKILL)
    asker.join(60)
    assert not asker.is_alive()
    assert time.monotonic() - started < 60
    assert outcome["status"] == 200  # the stream had started with keepalives
    events = outcome["events"]
    # Either the gateway's one retry loaded it, or the client hears why it could not.
    assert events[-1] == "[DONE]"
    fleet.wait_settled(timeout=120)
    with contextlib.suppress(Exception):
        fleet.gateway.post(f"/fleet/models/{model}/unload")


# --------------------------------------------------------------------------- restarts


def test_a_gateway_restarted_while_the_neuron_keeps_its_models(fleet):
    assert fleet.gateway.post("/fleet/models/demo-tiny/pin").json()["ok"]
    pid = fleet.worker_pid("demo-tiny")
    fleet.restart_gateway()
    fleet.gateway.wait_for(lambda: fleet.loaded("demo-tiny"), timeout=10)
    entry = next(m for m in fleet.gateway.fleet()["catalogue"] if m["id"] == "demo-tiny")
    assert entry["pinned"] and entry["pin_source"] == "api"
    fleet.wait_settled()
    assert fleet.worker_pid("demo-tiny") == pid  # served by the model it found, not a reload
    assert fleet.gateway.post("/fleet/models/demo-tiny/unpin").json()["ok"]


def test_a_neuron_restarted_under_a_running_gateway(fleet):
    fleet.restart_neuron()
    fleet.gateway.wait_neurons_up(timeout=30)
    fleet.wait_settled(timeout=120)  # demo-tiny is loaded again on demand
