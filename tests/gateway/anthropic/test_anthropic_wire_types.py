"""cortex.common.anthropic against Anthropic's payload shapes and the official SDK."""

from __future__ import annotations

import typing

import anthropic.types as sdk
import msgspec
import pytest
from translation_support import event_payloads, recorded_bytes, recorded_json

from cortex.common import anthropic as a
from cortex.common.errors import CortexError, anthropic_error_body, decode_body

STREAMS = ["text_stream.sse", "thinking_stream.sse", "tool_use_stream.sse", "error_stream.sse"]


@pytest.mark.parametrize("name", STREAMS)
def test_every_recorded_stream_event_decodes_and_reencodes_the_same(name):
    for payload in event_payloads(recorded_bytes(name)):
        event = msgspec.convert(payload, a.StreamEvent)
        assert a.event_name(event) == payload["type"]
        again = msgspec.json.decode(msgspec.json.encode(event))
        if payload["type"] == "message_start":
            # Our usage always carries the cache counters (as 0); the rest is identical.
            usage = again["message"].pop("usage")
            expected_usage = payload["message"].pop("usage")
            assert {k: usage[k] for k in expected_usage} == expected_usage
            again["message"].pop("stop_reason"), payload["message"].pop("stop_reason")
        if payload.get("content_block", {}).get("type") == "thinking":
            assert again["content_block"].pop("signature") == ""
        assert again == payload


def test_all_event_types_and_deltas_are_covered():
    kinds = {
        a.event_name(e)
        for name in STREAMS
        for e in (msgspec.convert(p, a.StreamEvent) for p in event_payloads(recorded_bytes(name)))
    }
    assert kinds == {
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
        "ping",
        "error",
    }
    deltas = {
        p["delta"]["type"]
        for name in STREAMS
        for p in event_payloads(recorded_bytes(name))
        if p["type"] == "content_block_delta"
    }
    assert deltas == {"text_delta", "input_json_delta", "thinking_delta", "signature_delta"}


def test_our_stop_reasons_are_exactly_the_sdks():
    assert set(typing.get_args(a.StopReason)) == set(typing.get_args(sdk.StopReason))


def test_recorded_tool_use_message_decodes_and_our_encoding_validates_with_the_sdk():
    payload = recorded_json("tool_use_message.json")
    message = msgspec.convert(payload, a.Message)  # unknown usage.service_tier tolerated
    assert [type(b) for b in message.content] == [a.TextBlock, a.ToolUseBlock]
    assert message.content[1].input == {"location": "San Francisco, CA", "unit": "celsius"}
    validated = sdk.Message.model_validate_json(msgspec.json.encode(message))
    assert validated.stop_reason == "tool_use"
    assert validated.content[1].name == "get_weather"


def test_message_encodes_nulls_and_zero_cache_counters_like_anthropic():
    message = a.Message(
        id="msg_x",
        model="demo",
        content=[a.ToolUseBlock(id="toolu_1", name="noargs", input={})],
        usage=a.Usage(input_tokens=3, output_tokens=1),
    )
    body = msgspec.json.decode(msgspec.json.encode(message))
    assert body == {
        "id": "msg_x",
        "type": "message",
        "role": "assistant",
        "model": "demo",
        "content": [{"type": "tool_use", "id": "toolu_1", "name": "noargs", "input": {}}],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 3,
            "output_tokens": 1,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        },
    }
    sdk.Message.model_validate(body)


def test_claude_code_request_decodes_with_cache_control_and_unknown_fields():
    body = recorded_json("claude_code_request.json")
    body["context_management"] = {"edits": []}  # a beta field: tolerated
    req = decode_body(msgspec.json.encode(body), a.MessagesRequest)
    assert req.max_tokens == 32000
    assert isinstance(req.thinking, a.ThinkingEnabled) and req.thinking.budget_tokens == 31999
    assert isinstance(req.system, list) and req.system[1].cache_control == {"type": "ephemeral"}
    kinds = [
        type(b).__name__ for m in req.messages if isinstance(m.content, list) for b in m.content
    ]
    assert {"ThinkingBlock", "RedactedThinkingBlock", "ToolUseBlock", "ToolResultBlock"} <= set(
        kinds
    )


def test_every_input_block_type_decodes():
    req = msgspec.convert(
        {
            "model": "m",
            "max_tokens": 5,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": "t"},
                        {"type": "image", "source": {"type": "url", "url": "https://x/y.png"}},
                        {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
                        {
                            "type": "document",
                            "source": {"type": "text", "media_type": "text/plain", "data": "d"},
                            "title": "T",
                        },
                        {
                            "type": "document",
                            "source": {
                                "type": "content",
                                "content": [{"type": "text", "text": "c"}],
                            },
                        },
                        {
                            "type": "document",
                            "source": {
                                "type": "base64",
                                "media_type": "application/pdf",
                                "data": "JVBER",
                            },
                        },
                        {
                            "type": "search_result",
                            "source": "https://x",
                            "title": "S",
                            "content": [{"type": "text", "text": "r"}],
                        },
                    ],
                }
            ],
        },
        a.MessagesRequest,
    )
    kinds = [type(b).__name__ for b in req.messages[0].content]
    assert kinds == ["TextBlock", "ImageBlock", "ImageBlock"] + ["DocumentBlock"] * 3 + [
        "SearchResultBlock"
    ]


def _error(body: dict) -> CortexError:
    with pytest.raises(CortexError) as info:
        decode_body(msgspec.json.encode(body), a.MessagesRequest)
    assert info.value.status == 400
    return info.value


BASE = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}


def test_max_tokens_is_required():
    body = dict(BASE)
    del body["max_tokens"]
    assert "max_tokens" in _error(body).message


@pytest.mark.parametrize(
    ("patch", "field"),
    [
        ({"messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].role"),
        ({"messages": []}, "messages"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": "10"}, "max_tokens"),
        ({"temperature": 1.5}, "temperature"),
        ({"stop_sequences": "END"}, "stop_sequences"),
        ({"tool_choice": {"type": "sometimes"}}, "tool_choice.type"),
        ({"thinking": {"type": "enabled"}}, "thinking"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
            "messages[0].content[0].type",
        ),
    ],
)
def test_wrong_types_are_refused_naming_the_field(patch, field):
    error = _error({**BASE, **patch})
    assert error.param == field, error.message
    assert f"`{field}`" in error.message


def test_server_tools_are_refused_with_a_message_that_says_why():
    error = _error(
        {**BASE, "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 5}]}
    )
    assert error.param == "tools[0]"
    assert "web_search_20250305" in error.message and "input_schema" in error.message


def test_a_custom_tool_without_schema_is_refused():
    error = _error({**BASE, "tools": [{"name": "lookup"}]})
    assert "lookup" in error.message and "input_schema" in error.message


def test_count_tokens_request_needs_no_max_tokens():
    body = {k: v for k, v in BASE.items() if k != "max_tokens"}
    req = decode_body(msgspec.json.encode(body), a.CountTokensRequest)
    assert req.model == "m"
    sdk.MessageTokensCount.model_validate_json(
        msgspec.json.encode(a.CountTokensResponse(input_tokens=12))
    )


def test_error_envelope_is_anthropics():
    body = anthropic_error_body(CortexError(529, "busy"))
    parsed = sdk.ErrorResponse.model_validate_json(body)
    assert parsed.error.type == "overloaded_error"
    assert parsed.error.message == "busy"
