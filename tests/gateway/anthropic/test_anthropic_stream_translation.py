"""OpenAI chunk streams -> Anthropic event streams, checked against recorded Anthropic
streams and read by the official SDK."""

from __future__ import annotations

import json
from typing import Any

import anthropic
import msgspec
import pytest
from translation_support import (
    chunk,
    content_of,
    event_payloads,
    openai_sse,
    recorded_bytes,
    sdk_client,
    sdk_stream_message,
    sdk_validate_events,
    shape,
    tool_delta,
    usage_chunk,
)

from cortex.common import anthropic as a
from cortex.common import openai as o
from cortex.common.errors import CortexError
from cortex.services.gateway.anthropic import (
    THINKING_SIGNATURE,
    StreamTranslator,
)
from cortex.services.gateway.anthropic.response import usage_from_openai

WEATHER = [{"name": "get_weather", "input_schema": {"type": "object"}}]


def request(**fields: Any) -> a.MessagesRequest:
    body = {
        "model": "claude-x",
        "max_tokens": 64,
        "stream": True,
        "messages": [{"role": "user", "content": "hi"}],
    }
    # Thinking asked for, so reasoning comes back (test_..._from_neuron_projection checks
    # that a request without it gets none).
    body["thinking"] = {"type": "enabled", "budget_tokens": 1024}
    return msgspec.convert({**body, **fields}, a.MessagesRequest)


def translate(
    chunks: list[dict], req: a.MessagesRequest | None = None, *, step: int = 0, **kw: Any
) -> bytes:
    """Run a neuron's SSE bytes through a fresh translator, ``step`` bytes at a time."""
    translator = StreamTranslator(req or request(), model=kw.pop("model", "claude-x"), **kw)
    data = openai_sse(chunks)
    pieces = [data] if not step else [data[i : i + step] for i in range(0, len(data), step)]
    out = b"".join(translator.feed_bytes(p) for p in pieces) + translator.finish()
    assert translator.done
    return out


# --------------------------------------------------------------------------- neuron streams
# The same content as each recorded Anthropic stream, as a neuron streams it.

TEXT_CHUNKS = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "Hello"}),
    chunk({"content": "!"}, finish="stop"),
    usage_chunk(25, 15),
]

THINKING_CHUNKS = [
    chunk({"role": "assistant"}),
    chunk(
        {
            "reasoning_content": "I need to find the GCD of 1071 and 462 using the Euclidean "
            "algorithm.\n\n1071 = 2 \u00d7 462 + 147"
        }
    ),
    chunk(
        {
            "reasoning_content": "\n462 = 3 \u00d7 147 + 21\n147 = 7 \u00d7 21 + 0"
            "\n\nSo GCD(1071, 462) = 21"
        }
    ),
    chunk({"content": "The greatest common divisor of 1071 and 462 is **21**."}),
    chunk({}, finish="stop"),
    usage_chunk(48, 174),
]

TOOL_TEXT = [
    "Okay", ",", " let", "'s", " check", " the", " weather", " for", " San", " Francisco", ",",
    " CA", ":",
]  # fmt: skip
TOOL_ARGS = [
    '{"location":', ' "San', " Francisc", "o,", ' CA"', ", ", '"unit": "fah', 'renheit"}',
]  # fmt: skip
TOOL_CHUNKS = [
    chunk({"role": "assistant"}),
    *[chunk({"content": piece}) for piece in TOOL_TEXT],
    chunk(tool_delta(0, "", id="toolu_01T1x1fJ34qAmk2tNTrN7Up6", name="get_weather")),
    *[chunk(tool_delta(0, piece)) for piece in TOOL_ARGS],
    chunk({}, finish="tool_calls"),
    usage_chunk(472, 89),
]


@pytest.mark.parametrize(
    ("chunks", "recorded", "tools"),
    [
        (TEXT_CHUNKS, "text_stream.sse", None),
        (THINKING_CHUNKS, "thinking_stream.sse", None),
        (TOOL_CHUNKS, "tool_use_stream.sse", WEATHER),
    ],
    ids=["text", "thinking", "tool_use"],
)
def test_stream_has_the_recorded_anthropic_shape_and_the_same_message(chunks, recorded, tools):
    expected = recorded_bytes(recorded)
    ours = translate(chunks, request(tools=tools) if tools else request())
    assert shape(ours) == shape(expected)
    sdk_validate_events(ours)  # every event passes the SDK's strict models

    mine, theirs = sdk_stream_message(ours), sdk_stream_message(expected)
    assert [b.type for b in mine.content] == [b.type for b in theirs.content]
    for block, reference in zip(mine.content, theirs.content, strict=True):
        if block.type == "thinking":
            assert block.thinking == reference.thinking
            assert block.signature == THINKING_SIGNATURE
        elif block.type == "text":
            assert block.text == reference.text
        else:
            assert (block.id, block.name, block.input) == (
                reference.id,
                reference.name,
                reference.input,
            )
    assert mine.stop_reason == theirs.stop_reason
    assert mine.usage.output_tokens == theirs.usage.output_tokens
    assert mine.usage.input_tokens == theirs.usage.input_tokens  # from the final usage chunk


def test_any_byte_split_gives_the_same_events():
    whole = event_payloads(translate(THINKING_CHUNKS + TOOL_CHUNKS[1:], request(tools=WEATHER)))
    one_byte = event_payloads(
        translate(THINKING_CHUNKS + TOOL_CHUNKS[1:], request(tools=WEATHER), step=1)
    )
    for events in (whole, one_byte):
        events[0]["message"].pop("id")
    assert whole == one_byte


def test_message_start_comes_first_with_usage_and_message_delta_carries_the_totals():
    events = event_payloads(translate(TEXT_CHUNKS, input_tokens=25))
    start = events[0]
    assert start["type"] == "message_start"
    assert start["message"]["usage"] == {
        "input_tokens": 25,
        "output_tokens": 0,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
    }
    assert start["message"]["content"] == [] and start["message"]["stop_reason"] is None
    assert start["message"]["id"].startswith("msg_")
    delta = events[-2]
    assert delta["type"] == "message_delta"
    assert delta["usage"]["output_tokens"] == 15 and delta["usage"]["input_tokens"] == 25
    assert events[-1] == {"type": "message_stop"}


def test_prompt_size_from_the_first_chunk_seeds_message_start():
    first = chunk({"role": "assistant"})
    first["timings"] = {"prompt_tokens": 31}
    events = event_payloads(translate([first, *TEXT_CHUNKS[1:]]))
    assert events[0]["message"]["usage"]["input_tokens"] == 31


def test_a_chunk_with_content_and_finish_reason_is_split():
    events = event_payloads(
        translate([chunk({"content": "All done."}, finish="stop"), usage_chunk(5, 3)])
    )
    assert [(e["type"], e.get("delta", {}).get("type")) for e in events] == [
        ("message_start", None),
        ("content_block_start", None),
        ("content_block_delta", "text_delta"),
        ("content_block_stop", None),
        ("message_delta", None),
        ("message_stop", None),
    ]


def test_a_chunk_carrying_reasoning_text_and_a_call_is_split_in_block_order():
    mixed = chunk(
        {
            "reasoning_content": "hmm",
            "content": "Calling.",
            **tool_delta(0, '{"city": "Oslo"}', id="call_9", name="get_weather"),
        },
        finish="tool_calls",
    )
    out = translate([mixed, usage_chunk(9, 4)], request(tools=WEATHER))
    assert shape(out) == [
        ("message_start",),
        ("content_block_start", 0, "thinking"),
        ("content_block_delta", 0, "thinking_delta"),
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0),
        ("content_block_start", 1, "text"),
        ("content_block_delta", 1, "text_delta"),
        ("content_block_stop", 1),
        ("content_block_start", 2, "tool_use"),
        ("content_block_delta", 2, "input_json_delta"),
        ("content_block_stop", 2),
        ("message_delta", "tool_use"),
        ("message_stop",),
    ]
    assert content_of(sdk_stream_message(out))[2]["input"] == {"city": "Oslo"}


def test_two_tool_calls_whole_arguments_and_whitespace_between_them():
    chunks = [
        chunk({"role": "assistant"}),
        chunk(tool_delta(0, '{"city": "Oslo"}', id="call_a", name="get_weather")),
        chunk({"content": "\n"}),
        chunk(tool_delta(1, '{"city": "Rome"}', id="call_b", name="get_weather")),
        chunk({}, finish="tool_calls"),
        usage_chunk(9, 20),
    ]
    out = translate(chunks, request(tools=WEATHER))
    message = sdk_stream_message(out)
    assert content_of(message) == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Oslo"}},
        {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"city": "Rome"}},
    ]
    assert message.stop_reason == "tool_use"


def test_servers_that_reuse_index_zero_for_each_call_still_get_two_blocks():
    chunks = [
        chunk(tool_delta(0, "{}", id="call_a", name="get_weather")),
        chunk(tool_delta(0, '{"x": 1}', id="call_b", name="get_weather")),
        chunk({}, finish="tool_calls"),
    ]
    message = sdk_stream_message(translate(chunks, request(tools=WEATHER)))
    assert [(b.id, b.input) for b in message.content] == [("call_a", {}), ("call_b", {"x": 1})]


def test_a_call_without_arguments_gets_an_empty_object():
    chunks = [chunk(tool_delta(0, "", id="call_a", name="get_weather"), finish="tool_calls")]
    events = event_payloads(translate(chunks, request(tools=WEATHER)))
    partial = [e["delta"]["partial_json"] for e in events if e["type"] == "content_block_delta"]
    assert partial == ["{}"]


def test_a_call_whose_name_arrives_after_its_first_arguments():
    chunks = [
        chunk({"tool_calls": [{"index": 0, "id": "call_a", "function": {"arguments": '{"a"'}}]}),
        chunk(
            {"tool_calls": [{"index": 0, "function": {"name": "get_weather", "arguments": ": 1}"}}]}
        ),
        chunk({}, finish="tool_calls"),
    ]
    message = sdk_stream_message(translate(chunks, request(tools=WEATHER)))
    assert content_of(message) == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"a": 1}}
    ]


def test_long_tool_names_are_restored_in_the_stream():
    long_name = "mcp__server__" + "very_long_tool_name_" * 5
    req = request(tools=[{"name": long_name, "input_schema": {"type": "object"}}])
    from cortex.services.gateway.anthropic import to_openai_request

    upstream = to_openai_request(req).tools[0].function.name
    assert upstream != long_name
    chunks = [chunk(tool_delta(0, "{}", id="c", name=upstream), finish="tool_calls")]
    assert sdk_stream_message(translate(chunks, req)).content[0].name == long_name


def test_whitespace_before_the_answer_is_kept_with_the_answer():
    chunks = [
        chunk({"reasoning_content": "think"}),
        chunk({"content": "\n\n"}),
        chunk({"content": "Answer"}, finish="stop"),
    ]
    message = sdk_stream_message(translate(chunks))
    assert content_of(message)[1] == {"type": "text", "text": "\n\nAnswer"}


def test_a_whitespace_only_answer_is_still_sent():
    message = sdk_stream_message(translate([chunk({"content": " "}, finish="stop")]))
    assert content_of(message) == [{"type": "text", "text": " "}]


def test_reasoning_after_text_opens_a_new_thinking_block():
    chunks = [
        chunk({"content": "First."}),
        chunk({"reasoning_content": "second thoughts"}),
        chunk({"content": "Second."}, finish="stop"),
    ]
    message = sdk_stream_message(translate(chunks))
    assert [b.type for b in message.content] == ["text", "thinking", "text"]


@pytest.mark.parametrize(
    ("finish", "extra", "stops", "expected"),
    [
        ("stop", {}, None, ("end_turn", None)),
        ("length", {}, None, ("max_tokens", None)),
        ("content_filter", {}, None, ("refusal", None)),
        ("stop", {"stop_reason": "END"}, ["END"], ("stop_sequence", "END")),
        ("stop", {"stop_reason": "<|im_end|>"}, ["END"], ("end_turn", None)),
    ],
)
def test_stop_reasons(finish, extra, stops, expected):
    req = request(stop_sequences=stops) if stops else request()
    message = sdk_stream_message(translate([chunk({"content": "x"}, finish=finish, **extra)], req))
    assert (message.stop_reason, message.stop_sequence) == expected


def test_a_call_cut_by_the_token_limit_is_max_tokens():
    chunks = [chunk(tool_delta(0, '{"city": "Os', id="c", name="get_weather"), finish="length")]
    events = event_payloads(translate(chunks, request(tools=WEATHER)))
    assert events[-2]["delta"]["stop_reason"] == "max_tokens"


def test_without_a_usage_chunk_done_completes_with_counted_output():
    out = translate([chunk({"content": "a"}), chunk({"content": "b"}), chunk({}, finish="stop")])
    events = event_payloads(out)
    assert events[-2]["usage"]["output_tokens"] == 2
    assert "input_tokens" not in events[-2]["usage"]  # unknown: clients keep message_start's


def test_usage_in_the_finish_chunk_completes_at_once():
    translator = StreamTranslator(request(), model="claude-x")
    out = translator.feed(
        chunk({"content": "x"}, finish="stop", usage={"prompt_tokens": 3, "completion_tokens": 1})
    )
    assert translator.done and out.endswith(
        b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
    )
    assert translator.stop_reason == "end_turn"
    assert translator.usage == o.Usage(prompt_tokens=3, completion_tokens=1, total_tokens=4)
    assert translator.finish() == b"" and translator.feed(chunk({"content": "late"})) == b""


# --------------------------------------------------------------------------- errors and ends


def sdk_read(sse: bytes) -> list[Any]:
    client = sdk_client(200, sse, stream=True)
    stream = client.messages.create(
        model="m", max_tokens=5, messages=[{"role": "user", "content": "x"}], stream=True
    )
    return list(stream)


def test_recorded_error_stream_and_ours_both_raise_in_the_sdk():
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        sdk_read(recorded_bytes("error_stream.sse"))
    translator = StreamTranslator(request(), model="claude-x")
    out = translator.feed_bytes(openai_sse([chunk({"content": "Hello"})], done=False))
    out += translator.error(CortexError(503, "Overloaded"))
    assert translator.done and translator.finish() == b""
    assert shape(out) == shape(recorded_bytes("error_stream.sse"))
    error = event_payloads(out)[-1]
    assert error == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        sdk_read(out)


def test_an_upstream_error_event_becomes_an_anthropic_error_event():
    upstream = openai_sse([chunk({"content": "Hel"})], done=False) + (
        b'data: {"error": {"message": "The model worker crashed", "type": "server_error", '
        b'"param": null, "code": "worker_died"}}\n\n'
    )
    translator = StreamTranslator(request(), model="claude-x")
    out = translator.feed_bytes(upstream) + translator.finish()
    error = event_payloads(out)[-1]
    assert error == {
        "type": "error",
        "error": {"type": "api_error", "message": "The model worker crashed"},
    }
    with pytest.raises(anthropic.APIStatusError, match="worker crashed"):
        sdk_read(out)


def test_a_dict_error_chunk_is_handled_like_the_bytes():
    translator = StreamTranslator(request(), model="claude-x")
    out = translator.feed({"error": {"message": "slow down", "type": "rate_limit_error"}})
    assert event_payloads(out) == [
        {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}
    ]


@pytest.mark.parametrize("done", [True, False], ids=["done-without-finish", "eof"])
def test_an_upstream_that_ends_without_finishing_gets_an_error_not_a_hang(done):
    translator = StreamTranslator(request(), model="claude-x")
    out = translator.feed_bytes(openai_sse([chunk({"content": "partial"})], done=done))
    out += translator.finish()
    events = event_payloads(out)
    assert events[-1]["type"] == "error"
    assert events[-1]["error"]["type"] == "api_error"
    assert "ended the stream before the response was complete" in events[-1]["error"]["message"]
    assert "message_stop" not in [e["type"] for e in events]


def test_an_upstream_that_sends_nothing_gets_an_error():
    translator = StreamTranslator(request(), model="claude-x")
    events = event_payloads(translator.finish())
    assert [e["type"] for e in events] == ["error"]


def test_an_unreadable_chunk_is_an_error_event():
    translator = StreamTranslator(request(), model="claude-x")
    out = translator.feed_bytes(b"data: {not json\n\n")
    assert event_payloads(out)[-1]["error"]["type"] == "api_error"


def test_interleaved_arguments_of_two_calls_are_an_error_not_corruption():
    chunks = [
        chunk(tool_delta(0, '{"a":', id="call_a", name="get_weather")),
        chunk(tool_delta(1, '{"b": 2}', id="call_b", name="get_weather")),
        chunk(tool_delta(0, " 1}")),
    ]
    translator = StreamTranslator(request(tools=WEATHER), model="claude-x")
    out = translator.feed_bytes(openai_sse(chunks, done=False))
    assert translator.done
    assert "interleaved" in event_payloads(out)[-1]["error"]["message"]


def test_ping_is_a_comment_before_message_start_and_an_event_after():
    translator = StreamTranslator(request(), model="claude-x")
    assert translator.ping() == b": ping\n\n"
    assert not translator.started
    translator.start()
    assert event_payloads(translator.ping()) == [{"type": "ping"}]
    assert translator.start() == b""  # once only
    translator.error(CortexError(500, "x"))
    assert translator.ping() == b""


def test_pings_between_events_are_ignored_by_the_sdk():
    translator = StreamTranslator(request(), model="claude-x")
    out = translator.ping() + translator.start() + translator.ping()
    out += translator.feed(chunk({"content": "hi"}, finish="stop"))
    out += translator.ping() + translator.finish()
    assert content_of(sdk_stream_message(out)) == [{"type": "text", "text": "hi"}]


def test_translators_share_no_state():
    first = StreamTranslator(request(tools=WEATHER), model="one")
    second = StreamTranslator(request(), model="two")
    out_a, out_b = b"", b""
    # Interleave two streams chunk by chunk.
    for a_chunk, b_chunk in zip(TOOL_CHUNKS, THINKING_CHUNKS + [chunk({})] * 20, strict=False):
        out_a += first.feed(a_chunk)
        out_b += second.feed(b_chunk)
    out_a += first.finish()
    out_b += second.finish()
    one, two = sdk_stream_message(out_a), sdk_stream_message(out_b)
    assert one.id != two.id and (one.model, two.model) == ("one", "two")
    assert [b.type for b in one.content] == ["text", "tool_use"]
    assert [b.type for b in two.content] == ["thinking", "text"]
    assert (
        json.dumps(one.content[1].input)
        == '{"location": "San Francisco, CA", "unit": "fahrenheit"}'
    )


def test_cached_prompt_tokens_are_cache_read_input_tokens_both_ways():
    cached = chunk(
        no_choices=True,
        usage={
            "prompt_tokens": 25,
            "completion_tokens": 15,
            "total_tokens": 40,
            "prompt_tokens_details": {"cached_tokens": 20},
        },
    )
    streamed = sdk_stream_message(translate([*TEXT_CHUNKS[:-1], cached]))
    usage = streamed.usage
    assert (usage.input_tokens, usage.cache_read_input_tokens, usage.output_tokens) == (5, 20, 15)
    whole = usage_from_openai(msgspec.convert(cached["usage"], o.Usage))
    assert (whole.input_tokens, whole.cache_read_input_tokens) == (5, 20)
