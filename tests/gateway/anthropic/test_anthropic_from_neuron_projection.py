"""The neuron's own OpenAI projection (its real code, fed inference events) through the
translation and into the official SDK: stream and non-stream give the same Message."""

from __future__ import annotations

import anthropic
import msgspec
import pytest
from translation_support import content_of, sdk_client, sdk_stream_message

from cortex.common import anthropic as a
from cortex.common import openai as o
from cortex.services.gateway.anthropic import (
    THINKING_SIGNATURE,
    StreamTranslator,
    from_openai_response,
    to_openai_request,
)
from cortex.services.neuron.pipeline.events import Finish, ReasoningDelta, TextDelta, ToolCallDelta
from cortex.services.neuron.pipeline.project import ChatStreamProjector, chat_completion

LONG_TOOL = "mcp__weather-service__get_current_conditions_for_a_city_by_its_name_and_country"


def request(stream: bool, **fields) -> a.MessagesRequest:
    body = {
        "model": "claude-x",
        "max_tokens": 64,
        "stream": stream,
        "messages": [{"role": "user", "content": "Weather in Oslo?"}],
        "tools": [{"name": LONG_TOOL, "input_schema": {"type": "object"}}],
    }
    return msgspec.convert({**body, **fields}, a.MessagesRequest)


def tool_turn(upstream_name: str, finish: Finish) -> list:
    return [
        ReasoningDelta("User wants "),
        ReasoningDelta("the weather."),
        TextDelta("\n\n"),
        TextDelta("Checking "),
        TextDelta("\U0001f326\ufe0f now."),
        ToolCallDelta(index=0, id="call_w1", name=upstream_name, arguments='{"city": "Oslo"}'),
        finish,
    ]


def text_turn(upstream_name: str, finish: Finish) -> list:
    return [TextDelta("It is "), TextDelta("cold."), finish]


def both_ways(
    req_stream: a.MessagesRequest, req_whole: a.MessagesRequest, finish: Finish, events=tool_turn
):
    """(streamed Message, non-stream Message), as the SDK returns them."""
    upstream = to_openai_request(req_stream, model="demo-small")
    name = upstream.tools[0].function.name
    projector = ChatStreamProjector(
        "demo-small", "chatcmpl-1", 1760000000, include_usage=upstream.stream_options.include_usage
    )
    translator = StreamTranslator(req_stream, model="claude-x")
    out = b""
    for event in events(name, finish):
        out += translator.feed_bytes(projector.feed(event))
    out += translator.finish()
    streamed = sdk_stream_message(out)

    completion = chat_completion(
        events(name, finish), model="demo-small", completion_id="chatcmpl-2", created=1
    )
    wire = msgspec.json.decode(msgspec.json.encode(completion), type=o.ChatCompletion)
    message = from_openai_response(wire, req_whole, model="claude-x")
    client = sdk_client(200, msgspec.json.encode(message), stream=False)
    whole = client.messages.create(
        model="claude-x", max_tokens=64, messages=[{"role": "user", "content": "x"}]
    )
    return streamed, whole


THINKING = {"thinking": {"type": "enabled", "budget_tokens": 1024}}


def test_a_thinking_tool_call_turn_is_the_same_message_both_ways():
    finish = Finish(reason="tool_calls", prompt_tokens=41, completion_tokens=17)
    streamed, whole = both_ways(request(True, **THINKING), request(False, **THINKING), finish)
    expected = [
        {
            "type": "thinking",
            "thinking": "User wants the weather.",
            "signature": THINKING_SIGNATURE,
        },
        {"type": "text", "text": "\n\nChecking \U0001f326\ufe0f now."},
        {"type": "tool_use", "id": "call_w1", "name": LONG_TOOL, "input": {"city": "Oslo"}},
    ]
    assert content_of(streamed) == content_of(whole) == expected
    for message in (streamed, whole):
        assert message.stop_reason == "tool_use"
        assert (message.usage.input_tokens, message.usage.output_tokens) == (41, 17)


@pytest.mark.parametrize("thinking", [None, {"type": "disabled"}])
def test_a_request_that_did_not_ask_for_thinking_gets_no_thinking_block(thinking):
    finish = Finish(reason="tool_calls", prompt_tokens=41, completion_tokens=17)
    fields = {} if thinking is None else {"thinking": thinking}
    streamed, whole = both_ways(request(True, **fields), request(False, **fields), finish)
    for message in (streamed, whole):
        assert [block["type"] for block in content_of(message)] == ["text", "tool_use"]
        assert message.usage.output_tokens == 17


def test_a_stop_string_is_reported_as_stop_sequence_both_ways():
    finish = Finish(reason="stop", prompt_tokens=5, completion_tokens=3, stop_sequence="END")
    stops = {"stop_sequences": ["END"]}
    streamed, whole = both_ways(request(True, **stops), request(False, **stops), finish, text_turn)
    for message in (streamed, whole):
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "END")
        assert content_of(message) == [{"type": "text", "text": "It is cold."}]


def test_a_failed_generation_raises_in_the_sdk():
    translator = StreamTranslator(request(True), model="claude-x")
    projector = ChatStreamProjector("demo-small", "chatcmpl-1", 1, include_usage=True)
    out = translator.feed_bytes(projector.feed(TextDelta("Hel")))
    out += translator.feed_bytes(
        projector.feed(Finish(reason="error", error="CUDA out of memory", error_status=503))
    )
    out += translator.finish()
    assert translator.done
    with pytest.raises(anthropic.APIStatusError, match="CUDA out of memory") as info:
        sdk_stream_message(out)
    assert info.value.body["error"]["type"] == "overloaded_error"
