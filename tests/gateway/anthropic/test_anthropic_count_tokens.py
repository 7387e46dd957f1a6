"""count_tokens: the request shaped for the neuron's /tokenize, counted by the real
chat template of the demo model (the neuron's own PromptBuilder)."""

from __future__ import annotations

import msgspec
import pytest
from translation_support import recorded_json

from cortex.common import anthropic as a
from cortex.common.errors import CortexError
from cortex.common.neuron import TokenizeRequest, TokenizeResponse
from cortex.services.gateway.anthropic import (
    count_tokens_response,
    to_openai_count,
    to_openai_request,
    to_tokenize_request,
)


def count_request(drop_images: bool = True) -> a.CountTokensRequest:
    body = recorded_json("claude_code_request.json")
    for key in ("max_tokens", "stream", "temperature", "metadata"):
        body.pop(key)
    if drop_images:
        result = body["messages"][-1]["content"][-1]
        result["content"] = [b for b in result["content"] if b["type"] != "image"]
    return msgspec.convert(body, a.CountTokensRequest)


def test_count_shapes_the_same_conversation_as_a_messages_request():
    req = count_request()
    messages, tools = to_openai_count(req)
    as_messages = msgspec.convert({**msgspec.to_builtins(req), "max_tokens": 1}, a.MessagesRequest)
    chat = to_openai_request(as_messages)
    assert messages == msgspec.to_builtins(chat.messages)
    assert tools == [{"type": "function", **msgspec.to_builtins(t)} for t in chat.tools]

    tokenize = to_tokenize_request(req, model="demo-tiny")
    assert isinstance(tokenize, TokenizeRequest)
    assert (tokenize.model, tokenize.add_generation_prompt) == ("demo-tiny", True)
    # It crosses the wire as the neuron decodes it.
    again = msgspec.json.decode(msgspec.json.encode(tokenize), type=TokenizeRequest)
    assert again.messages == messages and again.tools == tools


def test_no_tools_means_none():
    req = msgspec.convert(
        {"model": "m", "messages": [{"role": "user", "content": "hi"}]}, a.CountTokensRequest
    )
    assert to_openai_count(req) == ([{"role": "user", "content": "hi"}], None)


def test_the_response_is_anthropics():
    out = count_tokens_response(TokenizeResponse(model="demo-tiny", count=321))
    assert msgspec.json.encode(out) == b'{"input_tokens":321}'


def test_the_demo_models_chat_template_counts_the_translated_request(demo_models):
    from cortex.services.neuron.pipeline.prompt import PromptBuilder

    builder = PromptBuilder(demo_models.tiny)
    messages, tools = to_openai_count(count_request())
    ids = builder.tokenize_messages(messages, tools)
    prompt = builder.tokenizer.decode(ids, skip_special_tokens=False)
    # Everything the model would see is counted: system, tools, history, results.
    for text in (
        "You are Claude Code",
        "Why does the build fail?",
        "make build",
        "error: missing header foo.h",
        "MCP server unavailable",
        "cc -Iinclude main.c",
    ):
        assert text in prompt
    assert len(ids) > builder.count("Why does the build fail?")

    # Without the tools, fewer tokens: the definitions are part of the count.
    assert len(builder.tokenize_messages(messages)) < len(ids)


def test_an_image_reaches_the_neuron_which_says_the_model_cannot_see_it(demo_models):
    from cortex.services.neuron.pipeline.prompt import PromptBuilder

    messages, tools = to_openai_count(count_request(drop_images=False))
    with pytest.raises(CortexError) as info:
        PromptBuilder(demo_models.tiny).tokenize_messages(messages, tools)
    assert info.value.status == 400
    assert "image" in info.value.message.lower()
