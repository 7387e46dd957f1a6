"""The fleet event stream's ``requests`` event, and its quiet when nothing happens, end to
end: a real CPU neuron, a real gateway, the official SDKs.

While an OpenAI chat stream runs on a loaded model and an Anthropic messages stream waits
for its model's cold load, the gateway lists both about once a second (model, neuron,
dialect, TTFT, tokens so far, age), a new subscriber gets the list right after its
snapshot, and when both are done one empty list says so and the stream goes quiet. An
idle fleet publishes no placement that did not change.

A request ends for the gateway when it has relayed the last byte; the client may read
the rest from its socket later. So the watcher stops at the board's empty list (the
gateway's own "nothing in flight"), not when the client threads return: the board sends
that list once, and a watcher waiting for the threads as well could wait forever.
"""

from __future__ import annotations

import contextlib
import threading
import time

import anthropic
import httpx
import openai
import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron
from support.streams import NO_EOS

from cortex.common.sse import iter_events

pytestmark = pytest.mark.slow

CHAT_ID = "req-e2e-chat"
MESSAGES_ID = "req-e2e-messages"
# demo-tiny decodes 300-700 tokens/s here: 1900 tokens (its context is 2048) keep the
# chat stream on the gateway for at least 2.5 s, two or more of the board's ticks.
CHAT_TOKENS = 1900
BOUND_S = 180


@pytest.fixture(scope="module")
def fleet(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("requests-fleet")
    with (
        start_neuron(demo_models.root, root / "neuron", settings={"name": "local"}) as neuron,
        start_gateway(root / "gateway", neurons={"local": neuron.url}) as gateway,
    ):
        gateway.wait_neurons_up()
        gateway.post("/fleet/models/demo-tiny/load", json={}).raise_for_status()
        yield gateway


class Client(threading.Thread):
    """One SDK request in a thread; ``outcome`` says how it ended."""

    def __init__(self, send) -> None:
        super().__init__(daemon=True)
        self._send = send
        self.outcome = "running"

    def run(self) -> None:
        try:
            self._send()
        except Exception as exc:  # reported by the test's assertion
            self.outcome = f"failed: {exc!r}"
        else:
            self.outcome = "done"


def chat_stream(url: str) -> None:
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    stream = client.chat.completions.create(
        model="demo-tiny",
        messages=[{"role": "user", "content": "Count to a thousand."}],
        max_tokens=CHAT_TOKENS,
        logit_bias=NO_EOS,
        stream=True,
        extra_headers={"x-request-id": CHAT_ID},
    )
    for _ in stream:
        pass


def messages_stream(url: str) -> None:
    client = anthropic.Anthropic(base_url=url, api_key="unused", max_retries=0)
    with client.messages.stream(
        model="demo-small",  # not loaded: it waits for the cold load
        max_tokens=8,
        messages=[{"role": "user", "content": "Hello"}],
        extra_headers={"x-request-id": MESSAGES_ID},
    ) as stream:
        for _ in stream:
            pass


def first_events(url: str, count: int) -> list[str]:
    with httpx.stream("GET", url + "/fleet/events", timeout=httpx.Timeout(10)) as response:
        names = []
        for event in iter_events(response.iter_bytes()):
            names.append(event.event)
            if len(names) == count:
                return names
    return names


def test_requests_in_flight_are_listed_once_a_second_and_cleared_at_the_end(fleet):
    gateway = fleet
    chat = Client(lambda: chat_stream(gateway.url))
    messages = Client(lambda: messages_stream(gateway.url))
    seen: list[tuple[float, dict]] = []
    late_subscriber: list[str] = []
    timeout = httpx.Timeout(10, read=30)
    with httpx.stream("GET", gateway.url + "/fleet/events", timeout=timeout) as response:
        events = iter_events(response.iter_bytes())
        assert next(events).event == "snapshot"
        started = time.monotonic()
        chat.start()
        messages.start()
        for event in events:
            assert time.monotonic() - started < BOUND_S, (
                f"no empty requests list after {BOUND_S} s; last listed: "
                f"{seen[-1][1]['requests'] if seen else None}; "
                f"chat {chat.outcome}, messages {messages.outcome}"
            )
            if event.event != "requests":
                continue
            update = event.json()
            seen.append((time.monotonic() - started, update))
            listed_now = [r for r in update["requests"] if r["id"] == CHAT_ID]
            if listed_now and listed_now[0].get("tokens") and not late_subscriber:
                late_subscriber = first_events(gateway.url, 2)
            if not update["requests"]:
                break
    for client in (chat, messages):
        client.join(timeout=60)
    assert chat.outcome == "done", f"the chat stream: {chat.outcome}"
    assert messages.outcome == "done", f"the messages stream: {messages.outcome}"

    listed: dict[str, list[dict]] = {}
    for _, update in seen:
        for request in update["requests"]:
            listed.setdefault(request["id"], []).append(request)
    assert CHAT_ID in listed and MESSAGES_ID in listed, listed.keys()

    chat_rows = listed[CHAT_ID]
    assert {r["model"] for r in chat_rows} == {"demo-tiny"}
    assert {r["endpoint"] for r in chat_rows} == {"chat"}
    assert {r.get("neuron") for r in chat_rows} == {"local"}, "it had a lease at once"
    streaming = [r for r in chat_rows if r.get("ttft_ms") is not None]
    assert streaming, "its first token was seen while it ran"
    tokens = [r["tokens"] for r in streaming]
    assert tokens == sorted(tokens) and tokens[-1] > 0, "tokens so far only grow"
    assert streaming[-1]["tokens_per_s"] > 0
    ages = [r["age_s"] for r in chat_rows]
    assert len(ages) >= 2, f"listed on {len(ages)} tick(s) only: {chat_rows}"
    assert ages == sorted(ages) and ages[-1] > ages[0]

    messages_rows = listed[MESSAGES_ID]
    assert {r["model"] for r in messages_rows} == {"demo-small"}
    assert {r["endpoint"] for r in messages_rows} == {"messages"}, "the client's dialect"
    assert messages_rows[0].get("neuron") is None, "queued while demo-small loads"

    # Bounded: about one event a second while requests run, the empty list at the end.
    span = seen[-1][0] - seen[0][0]
    assert len(seen) <= span + 2, f"{len(seen)} events in {span:.1f} s"
    assert seen[-1][1] == {"type": "requests", "requests": [], "total": 0}
    assert all(u["requests"] for _, u in seen[:-1]), "one empty list, at the end"

    # A console that connects mid-stream sees the requests right after the snapshot.
    assert late_subscriber == ["snapshot", "requests"]

    # Nothing in flight: no more requests events, for 3 s.
    quiet = events_for(gateway.url, 3.0)
    assert quiet[0] == "snapshot" and "requests" not in quiet, quiet


def test_an_idle_fleet_publishes_no_unchanged_placements(fleet):
    """Each neuron status poll (twice a second) reports every placement; an idle
    gateway publishes none of them when nothing in them changed, so an idle console has
    nothing to repaint. The neuron's tok/s settles within its 5 s rate window."""
    gateway = fleet
    gateway.wait_for(lambda: not any(p.get("in_flight") for p in gateway.placements()))
    time.sleep(6.0)
    assert gateway.placements(), "demo-tiny is loaded (the fixture)"
    idle = events_for(gateway.url, 4.0)
    assert idle[0] == "snapshot"
    assert "placement" not in idle, idle


def events_for(url: str, seconds: float) -> list[str]:
    """The names of the events one subscriber gets in ``seconds`` (a quiet stream has
    only comments, so the read times out)."""
    names: list[str] = []
    deadline = time.monotonic() + seconds
    with (
        contextlib.suppress(httpx.ReadTimeout),
        httpx.stream(
            "GET", url + "/fleet/events", timeout=httpx.Timeout(10, read=seconds)
        ) as response,
    ):
        for event in iter_events(response.iter_bytes()):
            names.append(event.event)
            if time.monotonic() > deadline:
                break
    return names
