"""Responses <-> chat translation without HTTP: Codex's recorded request, items and
tools, streams as a neuron sends them (read back by the official openai SDK), and the
non-stream projection."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import httpx2
import msgspec
import openai
import pytest
from openai.types.responses import Response as SDKResponse
from openai.types.responses import ResponseStreamEvent
from pydantic import TypeAdapter

from cortex.common import responses as r
from cortex.common.errors import CortexError
from cortex.common.sse import iter_events
from cortex.services.gateway.responses import (
    ResponseStore,
    ResponseStream,
    from_chat_completion,
    listed,
    new_turn,
    parse_items,
    start_turn,
    to_chat_request,
)

RECORDED = Path(__file__).parent / "recorded"
SDK_EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


def request(**fields: Any) -> r.ResponsesRequest:
    return msgspec.convert({"model": "demo-tiny", **fields}, r.ResponsesRequest)


def chat_for(**fields: Any):
    req = request(**fields)
    turn = new_turn(req)
    return to_chat_request(req, turn.context, turn.functions, model="demo-tiny")


def chunk(delta: dict | None = None, *, finish: str | None = None, usage: dict | None = None):
    body: dict[str, Any] = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": "demo-tiny",
        "choices": []
        if delta is None and finish is None
        else [{"index": 0, "delta": delta or {}, "finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage
    return body


def usage(prompt: int, completion: int, **details: Any) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **details,
    }


def call_delta(name: str, arguments: str, call_id: str = "call_1") -> dict:
    function = {"name": name, "arguments": arguments}
    return {"tool_calls": [{"index": 0, "id": call_id, "type": "function", "function": function}]}


def sse(chunks: list[dict], done: bool = True) -> bytes:
    body = b"".join(b"data: " + json.dumps(c).encode() + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


def translate(stream: ResponseStream, data: bytes, seed: int = 3) -> bytes:
    """Feed the bytes split at random places, as the network does."""
    rng, out, at = random.Random(seed), b"", 0
    while at < len(data):
        step = rng.randint(1, 48)
        out += stream.feed_bytes(data[at : at + step])
        at += step
    return out + stream.finish()


def payloads(data: bytes) -> list[dict]:
    events = []
    for event in iter_events([data]):
        payload = json.loads(event.data)
        assert event.event == payload["type"]
        events.append(payload)
    return events


def sdk_final(data: bytes) -> SDKResponse:
    """The Response the openai SDK's stream helper accumulates from our bytes."""

    def answer(_request):
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=data)

    client = openai.OpenAI(
        api_key="x",
        base_url="http://cortex.test/v1",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )
    with client.responses.stream(model="m", input="hi") as stream:
        return stream.get_final_response()


# --------------------------------------------------------------------------- requests


def test_codexs_recorded_request_becomes_one_system_message_and_flat_functions():
    body = json.loads((RECORDED / "codex_0.171.0_exec_request.json").read_text())
    req = msgspec.convert(body, r.ResponsesRequest)
    turn = new_turn(req)
    chat = to_chat_request(req, turn.context, turn.functions, model="demo-long")
    roles = [m.role for m in chat.messages]
    assert roles == ["system", "user", "user"]  # two developer messages joined
    developer = [i for i in body["input"] if i["role"] == "developer"]
    for item in developer:
        for part in item["content"]:
            assert part["text"] in chat.messages[0].content
    assert chat.stream and chat.stream_options.include_usage
    assert chat.tool_choice == "auto" and chat.parallel_tool_calls is True
    names = [t.function.name for t in chat.tools]
    grouped = next(t for t in body["tools"] if t["type"] == "namespace")
    inner = [f"{grouped['name']}__{t['name']}" for t in grouped["tools"]]
    plain = [t["name"] for t in body["tools"] if t["type"] == "function"]
    assert sorted(names) == sorted(plain + inner)
    assert turn.functions.builtins == ["web_search"]
    # A call of a namespaced function comes back with its name and namespace apart.
    assert turn.functions.client(inner[0]) == (grouped["tools"][0]["name"], grouped["name"])


def test_one_assistant_turn_of_items_becomes_one_assistant_message():
    chat = chat_for(
        instructions="Be brief.",
        input=[
            {"role": "developer", "content": "Use tools."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "T"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Checking."}]},
            {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
            {
                "type": "function_call",
                "call_id": "c2",
                "name": "spawn",
                "namespace": "agents",
                "arguments": '{"n": 1}',
            },
            {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            {
                "type": "function_call_output",
                "call_id": "c2",
                "output": [{"type": "input_text", "text": "spawned"}],
            },
            {"role": "assistant", "content": "Sunny."},
        ],
        tools=[
            WEATHER,
            {
                "type": "namespace",
                "name": "agents",
                "tools": [{"type": "function", "name": "spawn", "parameters": {"type": "object"}}],
            },
        ],
    )
    shapes = [(m.role, m.content, m.reasoning_content, m.tool_call_id) for m in chat.messages]
    assert shapes == [
        ("system", "Be brief.\n\nUse tools.", None, None),
        ("user", "Hi", None, None),
        ("assistant", "Checking.", "T", None),
        ("tool", "sunny", None, "c1"),
        ("tool", "spawned", None, "c2"),
        ("assistant", "Sunny.", None, None),
    ]
    calls = chat.messages[2].tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("c1", "get_weather", "{}"),
        ("c2", "agents__spawn", '{"n": 1}'),
    ]


def test_text_format_and_options_map_to_the_chat_request():
    schema = {"type": "object", "properties": {"a": {"type": "string"}}}
    chat = chat_for(
        input="x",
        max_output_tokens=32,
        temperature=0.5,
        top_p=0.9,
        reasoning={"effort": "low", "summary": "auto"},
        text={"format": {"type": "json_schema", "name": "out", "schema": schema, "strict": True}},
        include=["reasoning.encrypted_content"],
        prompt_cache_key="k",
        metadata={"a": "b"},
        user="u",
    )
    assert (chat.max_tokens, chat.temperature, chat.top_p) == (32, 0.5, 0.9)
    assert chat.reasoning_effort == "low" and chat.user == "u"
    assert chat.response_format.type == "json_schema"
    assert chat.response_format.json_schema == {"name": "out", "schema": schema, "strict": True}
    assert chat_for(input="x", text={"format": {"type": "json_object"}}).response_format.type == (
        "json_object"
    )
    assert chat_for(input="x").response_format is None


@pytest.mark.parametrize(
    ("tools", "choice", "expected"),
    [
        ([WEATHER, {"type": "web_search"}], "auto", "auto"),
        ([WEATHER], "none", "none"),
        ([WEATHER], "required", "required"),
        ([{"type": "web_search"}], "auto", None),  # only built-ins: no tools at all
        ([WEATHER], {"type": "function", "name": "get_weather"}, "get_weather"),
        (
            [WEATHER, {**WEATHER, "name": "other"}],
            {
                "type": "allowed_tools",
                "mode": "required",
                "tools": [{"type": "function", "name": "other"}],
            },
            "required",
        ),
    ],
)
def test_tool_choice_and_built_in_tools(tools, choice, expected):
    chat = chat_for(input="x", tools=tools, tool_choice=choice)
    got = chat.tool_choice
    assert (got.function.name if hasattr(got, "function") else got) == expected
    assert all(t.type == "function" for t in chat.tools or ())
    if isinstance(choice, dict) and choice["type"] == "allowed_tools":
        assert [t.function.name for t in chat.tools] == ["other"]


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        (
            {"tools": [{"type": "web_search"}], "tool_choice": "required"},
            "tool_choice",
            "web_search",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "web_search"}},
            "tool_choice",
            "built-in tool 'web_search'",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "name": "nope"}},
            "tool_choice.name",
            "'get_weather'",
        ),
        (
            {"input": [{"type": "custom_tool_call", "call_id": "c"}]},
            "input[0].type",
            "custom_tool_call",
        ),
        (
            {"input": [{"type": "function_call_output", "output": "x"}]},
            "input[0].call_id",
            "call_id",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f"}]}]},
            "input[0].content[0].file_id",
            "image_url",
        ),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "input[0].content[0]",
            "input_text",
        ),
        (
            {"input": [{"type": "item_reference", "id": "msg_1"}]},
            "input[0]",
            "previous_response_id",
        ),
        (
            {"text": {"format": {"type": "json_schema", "name": "x"}}},
            "text.format.schema",
            "schema",
        ),
    ],
)
def test_what_cannot_be_served_is_a_400_naming_the_field(fields, param, words):
    with pytest.raises(CortexError) as caught:
        chat_for(**{"input": "x", **fields})
    error = caught.value
    assert error.status == 400 and error.param == param and words in error.message


@pytest.mark.parametrize(
    "fields",
    [{"background": True}, {"conversation": "conv_1"}, {"prompt": {"id": "pmpt_1"}}],
)
async def test_openai_hosted_state_is_refused(fields, tmp_path):
    store = ResponseStore(tmp_path / "db", max_age_s=60, max_count=10)
    with pytest.raises(CortexError) as caught:
        await start_turn(store, request(input="x", **fields))
    assert caught.value.status == 400 and caught.value.param == next(iter(fields))


async def test_an_unknown_previous_response_is_a_404(tmp_path):
    store = ResponseStore(tmp_path / "db", max_age_s=60, max_count=10)
    with pytest.raises(CortexError) as caught:
        await start_turn(store, request(input="x", previous_response_id="resp_gone"))
    assert caught.value.status == 404 and caught.value.code == "previous_response_not_found"


def test_input_items_are_listed_with_ids_and_parts():
    items = [listed(i) for i in parse_items([{"role": "user", "content": "Hi"}])]
    message = items[0]
    assert message.id.startswith("msg_") and message.status == "completed"
    assert message.content == [r.InputText("Hi")]
    assert parse_items("Hello") == [r.Message(role="user", content="Hello")]


# --------------------------------------------------------------------------- streams

REASONING_TEXT_CALL = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"reasoning_content": "The user wants "}),
    chunk({"reasoning_content": "the weather."}),
    chunk({"content": "\n\n"}),
    chunk({"content": "Let me "}),
    chunk({"content": "check."}),
    chunk({"content": "\n"}),
    chunk(call_delta("agents__spawn", '{"city": "Paris"}')),
    chunk({}, finish="tool_calls"),
    chunk(usage=usage(120, 17, prompt_tokens_details={"cached_tokens": 96})),
]


def stream_for(**fields: Any) -> ResponseStream:
    tools = [
        WEATHER,
        {
            "type": "namespace",
            "name": "agents",
            "description": "Sub-agents",
            "tools": [WEATHER | {"name": "spawn"}],
        },
    ]
    return ResponseStream(new_turn(request(input="Weather?", tools=tools, stream=True, **fields)))


def test_stream_events_in_openais_order_and_shapes():
    stream = stream_for()
    events = payloads(translate(stream, sse(REASONING_TEXT_CALL)))
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.delta",
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    for event in events:
        SDK_EVENT.validate_python(event)  # the SDK's own models, strictly
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [
        0,
        1,
        2,
    ]
    text = next(e for e in events if e["type"] == "response.output_text.done")
    assert text["text"] == "\n\nLet me check.\n"  # held whitespace opens the message
    call = events[-2]["item"]
    assert (call["name"], call["namespace"], call["arguments"]) == (
        "spawn",
        "agents",
        '{"city": "Paris"}',
    )
    final = events[-1]["response"]
    assert final["status"] == "completed" and final["id"] == events[0]["response"]["id"]
    assert final["usage"] == {
        "input_tokens": 120,
        "output_tokens": 17,
        "total_tokens": 137,
        "input_tokens_details": {"cached_tokens": 96, "cache_write_tokens": 0},
        "output_tokens_details": {"reasoning_tokens": 0},
    }
    assert stream.response is not None and stream.response.id == final["id"]


def test_the_sdk_accumulates_the_same_response_as_the_final_event():
    data = translate(stream_for(), sse(REASONING_TEXT_CALL))
    final = sdk_final(data)
    assert [item.type for item in final.output] == ["reasoning", "message", "function_call"]
    assert final.output[0].summary[0].text == "The user wants the weather."
    assert final.output_text == "\n\nLet me check.\n"
    assert final.output[2].call_id == "call_1"
    assert final.usage.input_tokens_details.cached_tokens == 96


def test_the_token_limit_makes_the_stream_incomplete():
    chunks = [
        chunk({"role": "assistant", "content": ""}),
        chunk({"content": "Once upon"}, finish="length"),
        chunk(usage=usage(9, 2)),
    ]
    events = payloads(translate(stream_for(max_output_tokens=2), sse(chunks)))
    final = events[-1]
    assert final["type"] == "response.incomplete"
    assert final["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert final["response"]["output"][0]["status"] == "incomplete"
    assert final["response"]["max_output_tokens"] == 2


@pytest.mark.parametrize(
    ("tail", "code"),
    [
        (b"", "upstream_incomplete"),  # the neuron died: no finish_reason, no [DONE]
        (b'data: {"error": {"message": "boom", "type": "server_error", "code": "x"}}\n\n', "x"),
    ],
)
def test_an_upstream_failure_after_the_head_is_an_error_then_response_failed(tail, code):
    data = sse([chunk({"role": "assistant", "content": ""}), chunk({"content": "Hi"})], False)
    events = payloads(translate(stream_for(), data + tail))
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-2]["code"] == code
    assert events[-1]["response"]["error"]["code"] == "server_error"
    for event in events:
        SDK_EVENT.validate_python(event)


def test_an_error_before_the_head_is_a_lone_error_event():
    stream = stream_for()
    events = payloads(stream.error(CortexError(503, "no neuron", code="neuron_unreachable")))
    assert events == [
        {
            "type": "error",
            "sequence_number": 0,
            "message": "no neuron",
            "code": "neuron_unreachable",
            "param": None,
        }
    ]
    assert stream.ping() == b"" and stream.finish() == b""


# --------------------------------------------------------------------------- non-stream


def test_a_completion_becomes_reasoning_message_and_calls():
    req = request(input="Weather?", tools=[WEATHER], store=False)
    completion = msgspec.convert(
        {
            "id": "chatcmpl-1",
            "created": 1,
            "model": "demo-tiny",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "\n",
                        "reasoning_content": "Need weather.",
                        "tool_calls": [
                            {
                                "id": "call_9",
                                "type": "function",
                                "function": {"name": "get_weather", "arguments": '{"city":"P"}'},
                            }
                        ],
                    },
                }
            ],
            "usage": usage(30, 12, completion_tokens_details={"reasoning_tokens": 4}),
        },
        r.ChatCompletion,
    )
    response = from_chat_completion(completion, new_turn(req))
    sdk = SDKResponse.model_validate(msgspec.to_builtins(response))
    assert [item.type for item in sdk.output] == ["reasoning", "function_call"]  # "\n" dropped
    assert sdk.output[1].call_id == "call_9" and sdk.output[1].status == "completed"
    assert sdk.status == "completed" and sdk.store is False
    assert sdk.usage.output_tokens_details.reasoning_tokens == 4
    assert sdk.tools[0].name == "get_weather"


def test_items_echoed_with_null_optional_fields_are_accepted():
    chat = chat_for(
        input=[
            {"role": "user", "content": "Hi", "id": None},
            {
                "type": "reasoning",
                "id": "rs_1",
                "summary": [{"type": "summary_text", "text": "Greet."}],
                "content": None,
                "encrypted_content": None,
            },
            {
                "type": "function_call",
                "call_id": "c",
                "name": "get_weather",
                "arguments": "{}",
                "id": None,
                "namespace": None,
                "status": None,
            },
        ],
        tools=[WEATHER],
    )
    assistant = chat.messages[-1]
    assert assistant.reasoning_content == "Greet." and assistant.tool_calls[0].id == "c"


def test_errors_count_items_from_this_requests_input_not_the_inherited_context():
    before = parse_items(
        [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    )
    bad = {"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}
    req = request(input=[{"role": "user", "content": "ok"}, bad], previous_response_id="r")
    turn = new_turn(req, before)
    with pytest.raises(CortexError) as caught:
        to_chat_request(req, turn.context, turn.functions, model="m", inherited=turn.inherited)
    assert caught.value.param == "input[1].content[0]"
