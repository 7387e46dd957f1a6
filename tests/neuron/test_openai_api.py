"""The OpenAI routes through the official SDK, against a real neuron and the demo model."""

from __future__ import annotations

import json

import openai
import pytest

HELLO = [{"role": "user", "content": "Hello, who are you?"}]


def test_chat_non_stream(client):
    response = client.chat.completions.create(model="demo-tiny", messages=HELLO, max_tokens=8)
    choice = response.choices[0]
    assert choice.message.role == "assistant"
    assert choice.finish_reason in ("stop", "length")
    assert response.usage.prompt_tokens > 0
    assert 1 <= response.usage.completion_tokens <= 8
    timings = response.model_extra["timings"]
    assert timings["completion_tokens"] == response.usage.completion_tokens


def test_chat_stream_ends_with_finish_and_usage(client):
    stream = client.chat.completions.create(
        model="demo-tiny",
        messages=HELLO,
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] in ("stop", "length")
    assert chunks[-1].choices == []
    assert chunks[-1].usage.completion_tokens <= 8


def test_stream_text_equals_non_stream_text_for_the_same_seed(client):
    options = {"model": "demo-tiny", "messages": HELLO, "max_tokens": 24, "seed": 7}
    whole = client.chat.completions.create(**options).choices[0].message.content
    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(**options, stream=True)
        if chunk.choices
    )
    assert streamed == whole


def test_completions_non_stream_and_stream(client):
    response = client.completions.create(model="demo-tiny", prompt="Once upon", max_tokens=6)
    assert response.choices[0].finish_reason in ("stop", "length")
    assert response.usage.completion_tokens <= 6
    chunks = list(
        client.completions.create(model="demo-tiny", prompt="Once upon", max_tokens=6, stream=True)
    )
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_models_lists_the_loaded_model_with_cortex_fields(client):
    models = client.models.list().data
    tiny = next(m for m in models if m.id == "demo-tiny")
    assert tiny.model_extra["cortex"]["state"] == "loaded"
    assert tiny.model_extra["cortex"]["max_seq_len"] == 2048


def test_forced_tool_call_returns_a_structured_call(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "unit": {"type": "string", "enum": ["c", "f"]},
                    },
                    "required": ["city", "unit"],
                },
            },
        }
    ]
    response = client.chat.completions.create(
        model="demo-tiny", messages=HELLO, tools=tools, tool_choice="required", seed=3
    )
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    arguments = json.loads(call.function.arguments)
    assert isinstance(arguments["city"], str)
    assert arguments["unit"] in ("c", "f")


def test_unknown_model_is_404(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="no-such-model", messages=HELLO)
    assert error.value.body["code"] == "model_not_found"


def test_model_on_disk_but_not_loaded_is_404_saying_how_to_load(client):
    with pytest.raises(openai.NotFoundError) as error:
        client.chat.completions.create(model="demo-small", messages=HELLO)
    assert error.value.body["code"] == "model_not_loaded"
    assert "/models/load" in error.value.body["message"]


def test_bad_field_is_400_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(
            model="demo-tiny", messages=[{"role": "wizard", "content": "hi"}]
        )
    assert error.value.body["param"] == "messages[0].role"


def test_bad_sampling_value_is_400_naming_the_field(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="demo-tiny", messages=HELLO, temperature=5)
    assert error.value.body["param"] == "temperature"


def test_prompt_plus_max_tokens_over_context_is_400_before_generation(client):
    with pytest.raises(openai.BadRequestError) as error:
        client.chat.completions.create(model="demo-tiny", messages=HELLO, max_tokens=5000)
    assert error.value.body["code"] == "context_length_exceeded"
    assert "2048" in error.value.body["message"]
