"""Projection onto OpenAI output, checked with the official openai SDK's own parsing."""

from __future__ import annotations

import json

import msgspec
import openai
import pytest
from openai.types import Completion as SDKCompletion
from openai.types.chat import ChatCompletion as SDKChatCompletion
from pipeline_support import sdk_stream

from cortex.common.errors import CortexError
from cortex.common.sse import iter_events
from cortex.services.neuron.pipeline.events import (
    EVENTS_DECODER,
    Finish,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from cortex.services.neuron.pipeline.project import (
    ChatStreamProjector,
    CompletionStreamProjector,
    chat_completion,
    completion,
)

FINISH = Finish(
    reason="stop",
    prompt_tokens=7,
    completion_tokens=5,
    ttft_ms=12.5,
    prefill_tokens_per_s=560.0,
    decode_tokens_per_s=80.0,
    total_ms=70.0,
)
CALL = ToolCallDelta(index=0, id="call_abc", name="get_weather", arguments='{"city":"Zürich"}')


def sse_payloads(data: bytes) -> list[str]:
    return [event.data for event in iter_events([data])]


def project_stream(events, include_usage=False) -> bytes:
    projector = ChatStreamProjector("demo-tiny", "chatcmpl-1", 1700000000, include_usage)
    return b"".join(projector.feed(event) for event in events)


def test_stream_chunks_parse_with_the_sdk():
    data = project_stream([ReasoningDelta("hmm"), TextDelta("Hi"), TextDelta(" there"), FINISH])
    assert data.endswith(b"data: [DONE]\n\n")
    chunks = sdk_stream(data)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[1].choices[0].delta.model_extra["reasoning_content"] == "hmm"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Hi there"
    assert [c.choices[0].finish_reason for c in chunks] == [None, None, None, None, "stop"]
    assert all(c.id == "chatcmpl-1" and c.model == "demo-tiny" for c in chunks)
    assert chunks[-1].usage is None
    assert chunks[-1].model_extra["timings"]["ttft_ms"] == 12.5


def test_tool_call_chunk_and_usage_chunk():
    finish = msgspec.structs.replace(FINISH, reason="tool_calls")
    chunks = sdk_stream(project_stream([CALL, finish], include_usage=True))
    [call] = chunks[1].choices[0].delta.tool_calls
    assert (call.index, call.id, call.type) == (0, "call_abc", "function")
    assert (call.function.name, call.function.arguments) == ("get_weather", '{"city":"Zürich"}')
    assert chunks[2].choices[0].finish_reason == "tool_calls"
    assert chunks[3].choices == []
    assert (chunks[3].usage.prompt_tokens, chunks[3].usage.completion_tokens) == (7, 5)
    assert chunks[3].usage.total_tokens == 12


def test_stop_string_is_reported_as_stop_reason():
    finish = msgspec.structs.replace(FINISH, stop_sequence="STOP")
    payloads = sse_payloads(project_stream([TextDelta("x"), finish]))
    assert json.loads(payloads[-2])["choices"][0]["stop_reason"] == "STOP"
    assert "stop_reason" not in json.loads(payloads[1])["choices"][0]


def test_error_mid_stream_is_an_openai_error_event_the_sdk_raises():
    failed = Finish(reason="error", error="worker crashed", error_status=503)
    data = project_stream([TextDelta("partial"), failed])
    payloads = sse_payloads(data)
    assert payloads[-1] == "[DONE]"
    assert json.loads(payloads[-2]) == {
        "error": {
            "message": "worker crashed",
            "type": "service_unavailable",
            "param": None,
            "code": "generation_failed",
        }
    }
    with pytest.raises(openai.APIError, match="worker crashed"):
        sdk_stream(data)


def test_projector_error_and_nothing_after_the_end():
    projector = ChatStreamProjector("m", "c", 1)
    data = projector.error(CortexError(503, "model unloaded", code="model_unloaded"))
    assert b"model unloaded" in data and data.endswith(b"data: [DONE]\n\n")
    assert projector.feed(TextDelta("late")) == b""
    assert projector.error("again") == b""


def test_non_stream_response_parses_with_the_sdk():
    events = [ReasoningDelta("why"), TextDelta("Answer"), FINISH]
    result = chat_completion(events, model="demo-tiny", completion_id="chatcmpl-2", created=1)
    parsed = SDKChatCompletion.model_validate(json.loads(msgspec.json.encode(result)))
    message = parsed.choices[0].message
    assert (message.role, message.content, message.tool_calls) == ("assistant", "Answer", None)
    assert message.model_extra["reasoning_content"] == "why"
    assert parsed.choices[0].finish_reason == "stop"
    assert parsed.usage.total_tokens == 12


def test_non_stream_content_is_null_when_only_tool_calls():
    second = msgspec.structs.replace(CALL, index=1, id="call_def", name="b", arguments="{}")
    finish = msgspec.structs.replace(FINISH, reason="tool_calls")
    result = chat_completion(
        [TextDelta("\n"), CALL, second, finish], model="m", completion_id="c", created=1
    )
    parsed = SDKChatCompletion.model_validate(json.loads(msgspec.json.encode(result)))
    message = parsed.choices[0].message
    assert message.content is None
    assert [c.function.name for c in message.tool_calls] == ["get_weather", "b"]
    assert json.loads(message.tool_calls[0].function.arguments) == {"city": "Zürich"}
    assert parsed.choices[0].finish_reason == "tool_calls"


def test_non_stream_error_raises():
    failed = Finish(reason="error", error="engine error: out of memory", error_status=500)
    with pytest.raises(CortexError, match="out of memory"):
        chat_completion([TextDelta("x"), failed], model="m", completion_id="c", created=1)
    with pytest.raises(CortexError):
        chat_completion([TextDelta("x")], model="m", completion_id="c", created=1)


def test_cancelled_projects_as_stop():
    cancelled = Finish(reason="cancelled")
    result = chat_completion([cancelled], model="m", completion_id="c", created=1)
    assert result.choices[0].finish_reason == "stop"


def test_legacy_completion_stream_and_response():
    events = [
        TextDelta("Once "),
        TextDelta("upon"),
        msgspec.structs.replace(FINISH, reason="length"),
    ]
    projector = CompletionStreamProjector("demo-tiny", "cmpl-1", 1, include_usage=True)
    data = b"".join(projector.feed(e) for e in events)
    chunks = sdk_stream(data, cast_to=SDKCompletion)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Once upon"
    assert chunks[-2].choices[0].finish_reason == "length"
    assert chunks[-1].usage.completion_tokens == 5
    result = completion(events, model="demo-tiny", completion_id="cmpl-1", created=1)
    parsed = SDKCompletion.model_validate(json.loads(msgspec.json.encode(result)))
    assert parsed.choices[0].text == "Once upon" and parsed.choices[0].finish_reason == "length"


def test_legacy_completion_writes_markers_back_as_text():
    events = [ReasoningDelta("r"), TextDelta("t"), CALL, FINISH]
    result = completion(events, model="m", completion_id="c", created=1)
    text = result.choices[0].text
    assert text.startswith("<think>r</think>t<tool_call>\n")
    assert json.loads(text.split("\n")[1]) == {
        "name": "get_weather",
        "arguments": {"city": "Zürich"},
    }


def test_events_cross_the_worker_pipe():
    events = [TextDelta("a"), ReasoningDelta("b"), CALL, FINISH]
    assert EVENTS_DECODER.decode(msgspec.msgpack.encode(events)) == events
