"""OpenAI chat completions -> Anthropic Messages (non-stream), read by the official SDK."""

from __future__ import annotations

import json
from typing import Any

import msgspec
import pytest
from translation_support import content_of, recorded_json, sdk_client

from cortex.common import anthropic as a
from cortex.common import openai as o
from cortex.services.gateway.anthropic import THINKING_SIGNATURE, from_openai_response

TOOLS = [
    {"name": "get_weather", "input_schema": {"type": "object"}},
    {"name": "lookup.by-key/" + "k" * 80, "input_schema": {"type": "object"}},
]


def request(**fields: Any) -> a.MessagesRequest:
    body = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    # Thinking asked for, so reasoning comes back (test_..._from_neuron_projection checks
    # that a request without it gets none).
    body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    return msgspec.convert({**body, **fields}, a.MessagesRequest)


def completion(
    *,
    content: str | None = None,
    reasoning: str | None = None,
    calls: list[tuple[str, str, str]] = (),
    finish: str = "stop",
    prompt: int = 30,
    completion_tokens: int = 12,
    **choice_extra: Any,
) -> o.ChatCompletion:
    """A ChatCompletion as the neuron returns it (JSON, decoded as the gateway would)."""
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if reasoning is not None:
        message["reasoning_content"] = reasoning
    if calls:
        message["tool_calls"] = [
            {"id": i, "type": "function", "function": {"name": n, "arguments": args}}
            for i, n, args in calls
        ]
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1760000000,
        "model": "demo-small",
        "choices": [
            {"index": 0, "message": message, "finish_reason": finish, "logprobs": None}
            | choice_extra
        ],
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        },
    }
    return msgspec.json.decode(json.dumps(body), type=o.ChatCompletion)


def through_sdk(message: a.Message):
    """What ``anthropic.Anthropic().messages.create`` returns for our response body."""
    client = sdk_client(200, msgspec.json.encode(message), stream=False)
    return client.messages.create(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
    )


def test_tool_use_response_has_the_recorded_anthropic_shape():
    recorded = recorded_json("tool_use_message.json")
    ours = from_openai_response(
        completion(
            content="I'll check the current weather in San Francisco for you.",
            calls=[
                (
                    "call_7f3a",
                    "get_weather",
                    '{"location": "San Francisco, CA", "unit": "celsius"}',
                )
            ],
            finish="tool_calls",
        ),
        request(tools=TOOLS),
        model="claude-x",
    )
    message = through_sdk(ours)
    assert message.id.startswith("msg_")
    assert (message.type, message.role, message.model) == ("message", "assistant", "claude-x")
    assert message.stop_reason == recorded["stop_reason"] == "tool_use"
    assert message.stop_sequence is None
    assert [b.type for b in message.content] == [b["type"] for b in recorded["content"]]
    assert message.content[0].text == recorded["content"][0]["text"]
    assert message.content[1].id == "call_7f3a"
    assert message.content[1].name == "get_weather"
    assert message.content[1].input == recorded["content"][1]["input"]
    assert (message.usage.input_tokens, message.usage.output_tokens) == (30, 12)
    assert message.usage.cache_creation_input_tokens == 0
    assert message.usage.cache_read_input_tokens == 0


def test_thinking_comes_first_with_a_signature_then_text_then_tools():
    message = through_sdk(
        from_openai_response(
            completion(
                content="\n",
                reasoning="The user wants weather.",
                calls=[("call_1", "get_weather", "{}"), ("call_2", "get_weather", '{"a": 1}')],
                finish="tool_calls",
            ),
            request(tools=TOOLS),
        )
    )
    # The lone newline between </think> and the calls is not a block of its own.
    assert content_of(message) == [
        {
            "type": "thinking",
            "thinking": "The user wants weather.",
            "signature": THINKING_SIGNATURE,
        },
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {"a": 1}},
    ]
    assert message.model == "demo-small"  # no override: the upstream's model


def test_long_tool_names_are_restored():
    req = request(tools=TOOLS)
    from cortex.services.gateway.anthropic import tool_names

    upstream_name = tool_names(req).to_openai(TOOLS[1]["name"])
    assert upstream_name != TOOLS[1]["name"]
    message = from_openai_response(
        completion(calls=[("call_1", upstream_name, '{"k": "v"}')], finish="tool_calls"), req
    )
    assert message.content[0].name == TOOLS[1]["name"]


@pytest.mark.parametrize(
    ("finish", "extra", "stops", "expected"),
    [
        ("stop", {}, None, ("end_turn", None)),
        ("length", {}, None, ("max_tokens", None)),
        ("content_filter", {}, None, ("refusal", None)),
        ("stop", {"stop_reason": "END"}, ["STOP", "END"], ("stop_sequence", "END")),
        # A stop string the client did not ask for (e.g. the model's own) is no stop_sequence.
        ("stop", {"stop_reason": "<|im_end|>"}, ["END"], ("end_turn", None)),
        ("stop", {"stop_reason": 2}, ["END"], ("end_turn", None)),  # an EOS token id
        ("stop", {"stop_reason": None}, ["END"], ("end_turn", None)),
    ],
)
def test_stop_reason_mapping(finish, extra, stops, expected):
    message = through_sdk(
        from_openai_response(
            completion(content="Some text", finish=finish, **extra),
            request(stop_sequences=stops) if stops else request(),
        )
    )
    assert (message.stop_reason, message.stop_sequence) == expected


def test_tool_calls_finish_gives_tool_use_and_length_mid_call_gives_max_tokens():
    req = request(tools=TOOLS)
    calls = [("call_1", "get_weather", '{"city": "Paris"}')]
    done = from_openai_response(completion(calls=calls, finish="tool_calls"), req)
    assert done.stop_reason == "tool_use"
    # Some servers finish with "stop" even after a call: still tool_use.
    assert (
        from_openai_response(completion(calls=calls, finish="stop"), req).stop_reason == "tool_use"
    )
    cut = from_openai_response(completion(calls=calls, finish="length"), req)
    assert cut.stop_reason == "max_tokens"


def test_arguments_that_are_not_a_json_object_become_text():
    message = through_sdk(
        from_openai_response(
            completion(
                content="Calling:",
                calls=[
                    ("call_1", "get_weather", '{"city": "Par'),
                    ("call_2", "get_weather", "[1]"),
                ],
                finish="tool_calls",
            ),
            request(tools=TOOLS),
        )
    )
    assert content_of(message) == [
        {"type": "text", "text": "Calling:"},
        {"type": "text", "text": '{"city": "Par'},
        {"type": "text", "text": "[1]"},
    ]
    assert message.stop_reason == "end_turn"  # nothing the client could run


def test_empty_and_whitespace_only_answers():
    empty = through_sdk(from_openai_response(completion(content=None)))
    assert empty.content == [] and empty.stop_reason == "end_turn"
    blank = through_sdk(from_openai_response(completion(content="  ")))
    assert content_of(blank) == [{"type": "text", "text": "  "}]


def test_missing_usage_counts_as_zero():
    resp = completion(content="x")
    resp.usage = None
    message = through_sdk(from_openai_response(resp))
    assert (message.usage.input_tokens, message.usage.output_tokens) == (0, 0)
