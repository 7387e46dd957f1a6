"""Round trips as Claude Code drives them: its request -> the OpenAI request -> the chunk
stream a neuron produces for it -> Anthropic events -> the SDK's Message -> the next
turn (the SDK's message echoed back with tool results) -> the next OpenAI request."""

from __future__ import annotations

import json
import random

import msgspec
from translation_support import (
    chunk,
    content_of,
    openai_sse,
    recorded_json,
    sdk_client,
    sdk_stream_message,
    tool_delta,
    usage_chunk,
)

from cortex.common import anthropic as a
from cortex.common import openai as o
from cortex.services.gateway.anthropic import (
    THINKING_SIGNATURE,
    StreamTranslator,
    from_openai_response,
    to_openai_request,
)

LONG_TOOL = "mcp__company-knowledge-base-production__search_engineering_design_documents_by_keyword"


def claude_code_request() -> a.MessagesRequest:
    return msgspec.convert(recorded_json("claude_code_request.json"), a.MessagesRequest)


def neuron_stream(upstream_tool_name: str) -> list[dict]:
    """What a neuron streams for a thinking model answering with text and two calls."""
    return [
        chunk({"role": "assistant", "content": ""}),
        chunk({"reasoning_content": "The header is missing; "}),
        chunk({"reasoning_content": "search the docs and read the Makefile."}),
        chunk({"content": "\n\n"}),
        chunk({"content": "I'll look "}),
        chunk({"content": "for foo.h."}),
        chunk(tool_delta(0, '{"query": "foo.h"}', id="call_q1", name=upstream_tool_name)),
        chunk({"content": "\n"}),
        chunk(tool_delta(1, '{"file_path": ', id="call_r2", name="Read")),
        chunk(tool_delta(1, '"/src/include/foo.h"}')),
        chunk({}, finish="tool_calls"),
        usage_chunk(1843, 57),
    ]


EXPECTED_CONTENT = [
    {
        "type": "thinking",
        "thinking": "The header is missing; search the docs and read the Makefile.",
        "signature": THINKING_SIGNATURE,
    },
    {"type": "text", "text": "\n\nI'll look for foo.h."},
    {"type": "tool_use", "id": "call_q1", "name": LONG_TOOL, "input": {"query": "foo.h"}},
    {
        "type": "tool_use",
        "id": "call_r2",
        "name": "Read",
        "input": {"file_path": "/src/include/foo.h"},
    },
]


def test_streamed_round_trip_through_the_sdk_and_into_the_next_turn():
    req = claude_code_request()
    upstream_request = to_openai_request(req, model="demo-small")
    assert upstream_request.stream and upstream_request.stream_options.include_usage
    upstream_name = upstream_request.tools[2].function.name
    assert upstream_name != LONG_TOOL

    translator = StreamTranslator(req, model=req.model)
    data = openai_sse(neuron_stream(upstream_name))
    rng = random.Random(4)
    out, at = b"", 0
    while at < len(data):  # the network splits bytes anywhere
        step = rng.randint(1, 40)
        out += translator.feed_bytes(data[at : at + step])
        at += step
    out += translator.finish()

    message = sdk_stream_message(out)
    assert content_of(message) == EXPECTED_CONTENT
    assert message.model == "claude-sonnet-4-5-20250929"
    assert message.stop_reason == "tool_use" and message.stop_sequence is None
    assert (message.usage.input_tokens, message.usage.output_tokens) == (1843, 57)

    # Claude Code's next turn: the SDK's message as the assistant turn, then the results.
    next_turn = msgspec.to_builtins(req)
    next_turn["messages"] += [
        {
            "role": "assistant",
            "content": [b.model_dump(exclude_none=True) for b in message.content],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_q1", "content": "foo.h: see libfoo"},
                {"type": "tool_result", "tool_use_id": "call_r2", "content": "#pragma once"},
            ],
        },
    ]
    follow_up = to_openai_request(msgspec.convert(next_turn, a.MessagesRequest))
    *_, assistant, docs, read = follow_up.messages
    assert assistant.reasoning_content == EXPECTED_CONTENT[0]["thinking"]
    assert assistant.content == "\n\nI'll look for foo.h."
    assert [
        (c.id, c.function.name, json.loads(c.function.arguments)) for c in assistant.tool_calls
    ] == [
        ("call_q1", upstream_name, {"query": "foo.h"}),
        ("call_r2", "Read", {"file_path": "/src/include/foo.h"}),
    ]
    assert [(m.role, m.tool_call_id, m.content) for m in (docs, read)] == [
        ("tool", "call_q1", "foo.h: see libfoo"),
        ("tool", "call_r2", "#pragma once"),
    ]


def test_non_stream_round_trip_through_the_sdk():
    req = msgspec.convert(
        {**recorded_json("claude_code_request.json"), "stream": False}, a.MessagesRequest
    )
    upstream_request = to_openai_request(req, model="demo-small")
    assert not upstream_request.stream and upstream_request.stream_options is None
    upstream_name = upstream_request.tools[2].function.name
    # The non-stream body a neuron returns for the same answer.
    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1760000000,
        "model": "demo-small",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "\n\nI'll look for foo.h.",
                    "reasoning_content": EXPECTED_CONTENT[0]["thinking"],
                    "tool_calls": [
                        {
                            "id": "call_q1",
                            "type": "function",
                            "function": {"name": upstream_name, "arguments": '{"query": "foo.h"}'},
                        },
                        {
                            "id": "call_r2",
                            "type": "function",
                            "function": {
                                "name": "Read",
                                "arguments": '{"file_path": "/src/include/foo.h"}',
                            },
                        },
                    ],
                },
                "finish_reason": "tool_calls",
                "logprobs": None,
            }
        ],
        "usage": {"prompt_tokens": 1843, "completion_tokens": 57, "total_tokens": 1900},
    }
    completion = msgspec.json.decode(json.dumps(body), type=o.ChatCompletion)
    ours = from_openai_response(completion, req, model=req.model)
    client = sdk_client(200, msgspec.json.encode(ours), stream=False)
    message = client.messages.create(
        model="claude-x", max_tokens=10, messages=[{"role": "user", "content": "x"}]
    )
    assert content_of(message) == EXPECTED_CONTENT
    assert message.stop_reason == "tool_use"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (1843, 57)
