"""OpenAI wire types against payloads shaped like the real API's, checked with the SDK's models."""

from __future__ import annotations

import json

import msgspec
import openai.types as oai
import openai.types.chat as oai_chat
import pytest

from cortex.common.errors import CortexError, decode_body, openai_error_body
from cortex.common.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    ChoiceDelta,
    ChunkChoice,
    Completion,
    CompletionChoice,
    CompletionRequest,
    FunctionCall,
    FunctionCallDelta,
    ModelCard,
    ModelList,
    NamedToolChoice,
    ResponseMessage,
    TextPart,
    ToolCall,
    ToolCallDelta,
    Usage,
)

# A request as the openai SDK sends it for a tool-using agent turn (shape of api.openai.com docs).
AGENT_REQUEST = {
    "model": "demo-small",
    "messages": [
        {"role": "developer", "content": "You are a coding agent."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is the weather in Paris?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_abc123",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_abc123", "content": "18C, light rain"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather in a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
                "strict": True,
            },
        }
    ],
    "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
    "parallel_tool_calls": False,
    "stream": True,
    "stream_options": {"include_usage": True},
    "max_completion_tokens": 256,
    "temperature": 0.2,
    "top_p": 0.9,
    "stop": ["\n\n"],
    "seed": 7,
    "presence_penalty": 0.5,
    "frequency_penalty": 0.1,
    "response_format": {"type": "text"},
    "store": False,  # a field cortex does not know: tolerated, as OpenAI tolerates new fields
    "service_tier": "auto",
}

# Streaming chunks as api.openai.com sends them for a tool call, then the usage chunk.
TOOL_CALL_CHUNKS = [
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "demo-small",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "delta": {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "index": 0,
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "get_weather", "arguments": ""},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "demo-small",
        "choices": [
            {
                "index": 0,
                "delta": {"tool_calls": [{"index": 0, "function": {"arguments": '{"city"'}}]},
                "logprobs": None,
                "finish_reason": None,
            }
        ],
    },
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "demo-small",
        "choices": [{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "tool_calls"}],
    },
    {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": "demo-small",
        "choices": [],
        "usage": {"prompt_tokens": 80, "completion_tokens": 12, "total_tokens": 92},
    },
]


def test_agent_request_decodes_with_every_field():
    request = msgspec.json.decode(json.dumps(AGENT_REQUEST), type=ChatCompletionRequest)
    assert [m.role for m in request.messages] == ["developer", "user", "assistant", "tool"]
    assert request.messages[1].text() == "What is the weather in Paris?"
    assert request.messages[2].tool_calls[0].function.arguments == '{"city": "Paris"}'
    assert request.messages[3].tool_call_id == "call_abc123"
    assert request.tools[0].function.parameters["required"] == ["city"]
    assert isinstance(request.tool_choice, NamedToolChoice)
    assert request.tool_choice.function.name == "get_weather"
    assert request.stream_options.include_usage is True
    assert request.token_limit() == 256
    assert request.stop_list() == ["\n\n"]


def test_string_tool_choice_and_string_stop():
    request = msgspec.json.decode(
        b'{"model": "m", "messages": [{"role": "user", "content": "hi"}],'
        b' "tool_choice": "required", "stop": "END", "max_tokens": 5}',
        type=ChatCompletionRequest,
    )
    assert request.tool_choice == "required"
    assert request.stop_list() == ["END"]
    assert request.token_limit() == 5


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        (
            b'{"model": "m", "messages": [{"role": "bot", "content": "x"}]}',
            "messages[0].role",
            "bot",
        ),
        (b'{"model": "m", "messages": "hi"}', "messages", "Expected `array`"),
        (b'{"messages": []}', None, "missing required field `model`"),
        (b'{"model": "m", "messages": [], "temperature": "hot"}', "temperature", "Expected `float"),
        (
            b'{"model": "m", "messages": [{"role": "user", "content": [{"type": "video"}]}]}',
            "messages[0].content[0].type",
            "video",
        ),
    ],
)
def test_wrong_types_are_rejected_naming_the_field(body, field, fragment):
    with pytest.raises(CortexError) as info:
        decode_body(body, ChatCompletionRequest)
    error = info.value
    assert error.status == 400
    assert fragment in error.message
    assert error.param == field
    if field:
        assert f"`{field}`" in error.message


def test_malformed_json_and_empty_body():
    with pytest.raises(CortexError, match="not valid JSON"):
        decode_body(b'{"model": ', ChatCompletionRequest)
    with pytest.raises(CortexError, match="empty"):
        decode_body(b"  ", ChatCompletionRequest)


def test_error_envelope_is_what_the_openai_sdk_expects():
    body = json.loads(
        openai_error_body(
            CortexError(400, "too long", code="context_length_exceeded", param="messages")
        )
    )
    assert body == {
        "error": {
            "message": "too long",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }
    }
    assert CortexError(429, "busy", retry_after=2.4).headers() == {"Retry-After": "2"}


def test_tool_call_stream_chunks_round_trip_and_validate_with_the_sdk():
    for payload in TOOL_CALL_CHUNKS:
        chunk = msgspec.json.decode(json.dumps(payload), type=ChatCompletionChunk)
        again = json.loads(msgspec.json.encode(chunk))
        oai_chat.ChatCompletionChunk.model_validate(again)
        assert again["choices"] == payload["choices"] or again["choices"][0]["delta"] == {
            k: v for k, v in payload["choices"][0]["delta"].items() if v is not None
        }
    usage_chunk = msgspec.json.decode(json.dumps(TOOL_CALL_CHUNKS[-1]), type=ChatCompletionChunk)
    assert usage_chunk.usage == Usage(80, 12, 92)


def test_chunks_we_build_parse_in_the_sdk():
    chunks = [
        ChatCompletionChunk(
            id="chatcmpl-x",
            created=1,
            model="m",
            choices=[ChunkChoice(0, ChoiceDelta(role="assistant", reasoning_content="hmm"))],
        ),
        ChatCompletionChunk(
            id="chatcmpl-x",
            created=1,
            model="m",
            choices=[
                ChunkChoice(
                    0,
                    ChoiceDelta(
                        tool_calls=[
                            ToolCallDelta(
                                index=0,
                                id="call_1",
                                type="function",
                                function=FunctionCallDelta(name="f", arguments="{}"),
                            )
                        ]
                    ),
                    finish_reason="tool_calls",
                )
            ],
        ),
    ]
    parsed = [
        oai_chat.ChatCompletionChunk.model_validate_json(msgspec.json.encode(c)) for c in chunks
    ]
    assert parsed[0].choices[0].delta.role == "assistant"
    assert parsed[0].choices[0].delta.model_extra["reasoning_content"] == "hmm"
    assert parsed[1].choices[0].delta.tool_calls[0].function.name == "f"
    assert parsed[1].choices[0].finish_reason == "tool_calls"


def test_chat_completion_with_tool_calls_parses_in_the_sdk():
    completion = ChatCompletion(
        id="chatcmpl-1",
        created=1700000000,
        model="demo-small",
        choices=[
            ChatChoice(
                index=0,
                message=ResponseMessage(
                    content=None,
                    tool_calls=[
                        ToolCall("call_1", FunctionCall("get_weather", '{"city":"Paris"}'))
                    ],
                ),
                finish_reason="tool_calls",
            )
        ],
        usage=Usage(10, 5, 15),
    )
    parsed = oai_chat.ChatCompletion.model_validate_json(msgspec.json.encode(completion))
    call = parsed.choices[0].message.tool_calls[0]
    assert (call.id, call.function.name, call.function.arguments) == (
        "call_1",
        "get_weather",
        '{"city":"Paris"}',
    )
    assert parsed.usage.total_tokens == 15


def test_legacy_completions():
    request = msgspec.json.decode(
        b'{"model": "m", "prompt": "Once upon", "max_tokens": 8, "echo": true, "logprobs": null}',
        type=CompletionRequest,
    )
    assert (request.prompt, request.max_tokens, request.echo) == ("Once upon", 8, True)
    token_prompt = msgspec.json.decode(
        b'{"model": "m", "prompt": [1, 2, 3]}', type=CompletionRequest
    )
    assert token_prompt.prompt == [1, 2, 3]
    response = Completion(
        id="cmpl-1",
        created=1,
        model="m",
        choices=[CompletionChoice(0, " a time", "length")],
        usage=Usage(2, 3, 5),
    )
    parsed = oai.Completion.model_validate_json(msgspec.json.encode(response))
    assert parsed.choices[0].text == " a time"


def test_model_list_parses_in_the_sdk_and_keeps_extension_fields():
    listing = ModelList(
        data=[ModelCard(id="demo-tiny", created=1, cortex={"state": "loaded", "neurons": ["a"]})]
    )
    raw = msgspec.json.encode(listing)
    model = oai.Model.model_validate(json.loads(raw)["data"][0])
    assert model.id == "demo-tiny"
    assert model.model_extra["cortex"]["state"] == "loaded"


def test_text_part_helper_ignores_non_text_parts():
    request = msgspec.convert(
        {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "a"}]}]},
        type=ChatCompletionRequest,
    )
    assert isinstance(request.messages[0].content[0], TextPart)
    assert request.messages[0].text() == "a"


def test_tools_keep_their_type_when_encoded():
    # Strict OpenAI-compatible servers require "type": "function" on every tool.
    request = msgspec.json.decode(
        b'{"model": "m", "messages": [], "tools": [{"type": "function",'
        b' "function": {"name": "f"}}]}',
        type=ChatCompletionRequest,
    )
    assert json.loads(msgspec.json.encode(request))["tools"] == [
        {"type": "function", "function": {"name": "f"}}
    ]
