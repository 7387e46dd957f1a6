"""Conversation affinity: the prefix chain, the bounded table, the choice. No HTTP."""

from __future__ import annotations

import json

import msgspec

from cortex.common import anthropic as a
from cortex.services.gateway.affinity import (
    AffinityTable,
    Candidate,
    caches_system,
    choose,
    from_openai,
)

SYSTEM = {"role": "system", "content": "You are a coding agent."}


def body(*messages, **extra) -> bytes:
    return json.dumps({"model": "m", "messages": list(messages), **extra}).encode()


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_a_next_turn_extends_the_chain_of_the_last_one():
    turn1 = from_openai(body(SYSTEM, user("fix the bug")))
    turn2 = from_openai(body(SYSTEM, user("fix the bug"), assistant("done"), user("and test")))
    assert turn1 is not None and turn2 is not None
    assert turn2.hashes[: len(turn1.hashes)] == turn1.hashes
    other = from_openai(body(SYSTEM, user("write docs")))
    assert other is not None and other.hashes[:2] == turn1.hashes[:2]  # same tools, system
    assert other.hashes[2] != turn1.hashes[2]
    # Without a hint, a match must reach past the system prompt.
    assert (turn1.counted_from, turn1.hint) == (2, "messages")


def test_tools_seed_the_chain_so_other_tools_mean_another_prefix():
    tool = {"type": "function", "function": {"name": "read", "parameters": {}}}
    with_tools = from_openai(body(SYSTEM, user("x"), tools=[tool]))
    without = from_openai(body(SYSTEM, user("x")))
    assert with_tools is not None and without is not None
    assert with_tools.hashes[0] != without.hashes[0]
    again = from_openai(body(SYSTEM, user("x"), assistant("y"), user("z"), tools=[tool]))
    assert again is not None and again.hashes[:3] == with_tools.hashes


def test_hints_prompt_cache_key_and_cache_control_change_what_counts():
    keyed = from_openai(body(SYSTEM, user("x"), prompt_cache_key="session-1"))
    assert keyed is not None and (keyed.hint, keyed.counted_from) == ("prompt_cache_key", 0)
    again = from_openai(body(SYSTEM, user("something else"), prompt_cache_key="session-1"))
    assert again is not None and again.hashes[0] == keyed.hashes[0]
    cached = from_openai(body(SYSTEM, user("x")), system_breakpoint=True)
    assert cached is not None and (cached.hint, cached.counted_from) == ("cache_control", 1)


def test_completions_prompts_chain_in_pieces_and_bad_bodies_have_no_prefix():
    long = "x" * 5000
    prefix = from_openai(json.dumps({"model": "m", "prompt": long}).encode())
    assert prefix is not None and len(prefix.hashes) == 4 and prefix.hint == "prompt"
    assert from_openai(b"not json") is None
    assert from_openai(json.dumps({"model": "m"}).encode()) is None


def test_anthropic_breakpoints_on_system_or_tools_are_seen():
    plain = msgspec.convert(
        {"model": "m", "max_tokens": 5, "system": "s", "messages": [user("hi")]},
        a.MessagesRequest,
    )
    assert not caches_system(plain)
    marked = msgspec.convert(
        {
            "model": "m",
            "max_tokens": 5,
            "system": [{"type": "text", "text": "s", "cache_control": {"type": "ephemeral"}}],
            "messages": [user("hi")],
        },
        a.MessagesRequest,
    )
    assert caches_system(marked)


def test_the_table_finds_the_deepest_prefix_and_stays_bounded():
    table = AffinityTable(per_placement=6)
    key = ("m", "a")
    turn1 = from_openai(body(SYSTEM, user("one")))
    turn2 = from_openai(body(SYSTEM, user("one"), assistant("1"), user("two")))
    assert turn1 and turn2
    assert table.depth(key, turn2) == -1
    table.remember(key, turn1)
    assert table.depth(key, turn2) == 2  # system + first user message
    table.remember(key, turn2)
    assert table.depth(key, turn2) == 4
    assert table.size(key) == 5
    other = from_openai(body(SYSTEM, user("new"), assistant("n"), user("more")))
    assert other
    table.remember(key, other)  # three new hashes; the oldest go
    assert table.size(key) == 6
    assert table.depth(key, turn1) == 1  # its own last message went first (LRU)
    table.forget(key)
    assert table.depth(key, other) == -1


def test_choice_prefers_the_deepest_match_then_falls_back_when_saturated_or_down():
    prefix = from_openai(body(SYSTEM, user("one")))
    assert prefix
    a_, b_ = Candidate("a", 0, 2, depth=-1), Candidate("b", 1, 2, depth=2)
    assert choose([a_, b_], prefix) == ("b", "affinity:messages:2")
    # A system-prompt-only match does not count without a hint: least in flight.
    shallow = [Candidate("a", 1, 2, depth=1), Candidate("b", 0, 2, depth=1)]
    assert choose(shallow, prefix) == ("b", "least_in_flight:no_match")
    saturated = [Candidate("a", 0, 2), Candidate("b", 2, 2, depth=2)]
    assert choose(saturated, prefix) == ("a", "least_in_flight:saturated")
    down = [Candidate("a", 3, 4), Candidate("b", 0, 4, depth=2, eligible=False)]
    assert choose(down, prefix) == ("a", "least_in_flight:down")
    assert choose([Candidate("a", 0, 1, eligible=False)], prefix) is None
    # No prefix: least in flight, the first among equals as before affinity.
    even = [Candidate("a", 1, 2), Candidate("b", 1, 2)]
    assert choose(even, None) == ("a", "least_in_flight")


def test_least_in_flight_counts_against_each_placements_concurrency():
    # One request on a one-slot engine fills it; three on an eight-slot one leave room.
    assert choose([Candidate("a", 1, 1), Candidate("b", 3, 8)], None) == ("b", "least_in_flight")
    assert choose([Candidate("a", 0, 1), Candidate("b", 3, 8)], None) == ("a", "least_in_flight")
    # The same among the deepest affinity matches.
    prefix = from_openai(body(SYSTEM, user("one")))
    assert prefix
    deep = [Candidate("a", 1, 2, depth=2), Candidate("b", 2, 8, depth=2)]
    assert choose(deep, prefix) == ("b", "affinity:messages:2")
