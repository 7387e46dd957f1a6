"""What Claude Code 2.1.197 really sent (recorded through a proxy, ids zeroed), and the
message shapes of newer versions: all of it is accepted and translated faithfully, by
/v1/messages and by count_tokens alike."""

from __future__ import annotations

import json

import msgspec
import pytest
from translation_support import recorded_json

from cortex.common import anthropic as a
from cortex.common.errors import CortexError, decode_body
from cortex.services.gateway.anthropic import to_openai_count, to_openai_request

RECORDINGS = ["claude_code_2.1.197_default.json", "claude_code_2.1.197_sonnet.json"]


def recorded_body(name: str) -> dict:
    return recorded_json(name)["body"]


def count_body(body: dict) -> dict:
    return {k: v for k, v in body.items() if k not in ("max_tokens", "stream", "metadata")}


@pytest.mark.parametrize("name", RECORDINGS)
def test_every_recorded_claude_code_body_is_accepted_by_messages_and_count_tokens(name):
    body = recorded_body(name)
    req = decode_body(json.dumps(body).encode(), a.MessagesRequest)
    chat = to_openai_request(req, model="demo-long")
    assert len(chat.tools) == len(body["tools"]) == 24
    counted = decode_body(json.dumps(count_body(body)).encode(), a.CountTokensRequest)
    messages, tools = to_openai_count(counted)
    assert messages == msgspec.to_builtins(chat.messages) and len(tools) == 24


def test_the_default_models_mid_conversation_system_message_stays_where_it_was_sent():
    recording = recorded_json("claude_code_2.1.197_default.json")
    assert "mid-conversation-system-2026-04-07" in recording["headers"]["anthropic-beta"]
    body = recording["body"]
    assert [m["role"] for m in body["messages"]] == ["user", "system"]
    chat = to_openai_request(msgspec.convert(body, a.MessagesRequest))
    system, user, agents = chat.messages
    assert [m.role for m in chat.messages] == ["system", "user", "system"]
    assert system.content.startswith("x-anthropic-billing-header")
    assert user.content.endswith("say hi")
    assert agents.content == body["messages"][1]["content"]
    assert agents.content.startswith("Available agent types for the Agent tool")


def test_system_messages_take_text_blocks_and_refuse_other_blocks():
    def req(content):
        messages = [{"role": "user", "content": "hi"}, {"role": "system", "content": content}]
        body = {"model": "m", "max_tokens": 8, "messages": messages}
        return msgspec.convert(body, a.MessagesRequest)

    blocks = [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    assert to_openai_request(req(blocks)).messages[-1].content == "one\n\ntwo"
    image = {"type": "image", "source": {"type": "url", "url": "http://x/y.png"}}
    with pytest.raises(CortexError) as caught:
        to_openai_request(req([image]))
    assert caught.value.status == 400 and caught.value.param == "messages[1].content[0]"
    assert "text blocks only" in caught.value.message


def test_other_roles_are_still_refused_naming_the_field():
    body = {"model": "m", "max_tokens": 8, "messages": [{"role": "tool", "content": "x"}]}
    with pytest.raises(CortexError) as caught:
        decode_body(json.dumps(body).encode(), a.MessagesRequest)
    assert caught.value.status == 400 and caught.value.param == "messages[0].role"


def test_tool_search_is_left_out_and_deferred_tools_are_shown_to_the_model():
    schema = {"type": "object", "properties": {"q": {"type": "string"}}}
    tools = [
        {"type": "tool_search_tool_regex_20251119", "name": "tool_search_tool_regex"},
        {"type": "tool_search_tool_bm25_20251119", "name": "tool_search_tool_bm25"},
        {"name": "Read", "input_schema": schema},
        {"name": "mcp__docs__search", "input_schema": schema, "defer_loading": True},
    ]
    body = {
        "model": "m",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
        "tools": tools,
        "tool_choice": {"type": "auto"},
    }
    chat = to_openai_request(msgspec.convert(body, a.MessagesRequest))
    assert [t.function.name for t in chat.tools] == ["Read", "mcp__docs__search"]
    count = msgspec.convert(count_body(body), a.CountTokensRequest)
    assert [t["function"]["name"] for t in to_openai_count(count)[1]] == [
        "Read",
        "mcp__docs__search",
    ]
    # Server tools that do run on Anthropic's side are still refused.
    body["tools"] = [{"type": "web_search_20250305", "name": "web_search"}]
    with pytest.raises(CortexError):
        decode_body(json.dumps(body).encode(), a.MessagesRequest)
