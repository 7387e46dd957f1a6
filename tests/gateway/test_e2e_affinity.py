"""Conversation affinity end to end: demo-tiny on two real CPU neurons, a real gateway,
the official SDKs.

Least in flight alone sends a request for an idle fleet to A (the first placement among
equals). Each test first sends a conversation's opening turn to B by holding a stream on
A, then lets A go idle: the next turn still goes to B because B served its prefix, and
the request's log line says so.
"""

from __future__ import annotations

import re

import anthropic
import openai
import pytest
from support.fleets import tiny_everywhere
from support.streams import HeldStreams

pytestmark = pytest.mark.slow

SYSTEM = "You are a careful coding agent. Answer briefly."


@pytest.fixture(scope="module")
def fleet(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("affinity-fleet")
    with tiny_everywhere(demo_models, root, {"a": {}, "b": {}}) as (gateway, neurons):
        yield type("Fleet", (), {**neurons, "gateway": gateway})


@pytest.fixture(scope="module")
def oai(fleet):
    return openai.OpenAI(base_url=fleet.gateway.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def claude(fleet):
    return anthropic.Anthropic(base_url=fleet.gateway.url, api_key="unused", max_retries=0)


def routes(gateway, request_id: str) -> tuple[str, str]:
    """(neuron, route) from the gateway's log line for ``request_id``."""
    found = re.search(rf"request {request_id} .*neuron=(\S+) .*route=(\S+)", gateway.log_text())
    assert found, f"no log line for {request_id}"
    return found.group(1), found.group(2)


def opening_turn_on_b(fleet, send):
    """Send ``send()`` while A serves a held stream, so least in flight picks B."""
    held = HeldStreams(fleet.gateway.url, "demo-tiny", 1, tag="distraction")
    try:
        fleet.gateway.wait_for(lambda: held.chunks[0] > 0, timeout=60)
        return send()
    finally:
        held.close()
        fleet.gateway.wait_for(
            lambda: all(p.get("in_flight", 0) == 0 for p in fleet.gateway.placements()),
            timeout=30,
        )


def test_a_conversations_next_turn_goes_back_to_the_placement_that_served_it(fleet, oai):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Fix bug 1"}]

    def first():
        return oai.chat.completions.with_raw_response.create(
            model="demo-tiny", messages=messages, max_tokens=8
        )

    raw = opening_turn_on_b(fleet, first)
    assert routes(fleet.gateway, raw.headers["x-request-id"]) == ("b", "least_in_flight:no_match")
    answer = raw.parse().choices[0].message.content or ""
    messages += [{"role": "assistant", "content": answer}, {"role": "user", "content": "Now test"}]
    raw = oai.chat.completions.with_raw_response.create(
        model="demo-tiny", messages=messages, max_tokens=8
    )
    assert routes(fleet.gateway, raw.headers["x-request-id"]) == ("b", "affinity:messages:2")
    # A new conversation that shares only the system prompt spreads as before.
    other = oai.chat.completions.with_raw_response.create(
        model="demo-tiny",
        messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Docs"}],
        max_tokens=4,
    )
    assert routes(fleet.gateway, other.headers["x-request-id"]) == ("a", "least_in_flight:no_match")
    placements = {p["neuron"]: p for p in fleet.gateway.placements("demo-tiny")}
    assert placements["b"]["affinity_prefixes"] >= 4


def test_prompt_cache_key_groups_requests_with_different_messages(fleet, oai):
    def send(text: str):
        return oai.chat.completions.with_raw_response.create(
            model="demo-tiny",
            messages=[{"role": "user", "content": text}],
            max_tokens=4,
            extra_body={"prompt_cache_key": "session-42"},
        )

    first = opening_turn_on_b(fleet, lambda: send("first"))
    assert routes(fleet.gateway, first.headers["x-request-id"])[0] == "b"
    again = send("something else entirely")
    assert routes(fleet.gateway, again.headers["x-request-id"]) == (
        "b",
        "affinity:prompt_cache_key:0",
    )


def test_an_anthropic_cache_control_breakpoint_makes_the_system_prompt_count(fleet, claude):
    system = [
        {"type": "text", "text": SYSTEM + " (Claude)", "cache_control": {"type": "ephemeral"}}
    ]

    def send(text: str):
        return claude.messages.with_raw_response.create(
            model="demo-tiny",
            system=system,
            messages=[{"role": "user", "content": text}],
            max_tokens=4,
        )

    first = opening_turn_on_b(fleet, lambda: send("session one"))
    assert routes(fleet.gateway, first.headers["x-request-id"])[0] == "b"
    # Another conversation with the same cached system prompt follows it.
    other = send("session two")
    assert routes(fleet.gateway, other.headers["x-request-id"]) == ("b", "affinity:cache_control:1")
