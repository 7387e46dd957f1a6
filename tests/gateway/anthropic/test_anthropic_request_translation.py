"""Anthropic Messages requests -> OpenAI chat requests (what the neuron receives)."""

from __future__ import annotations

import json

import msgspec
import pytest
from translation_support import recorded_json

from cortex.common import anthropic as a
from cortex.common import openai as o
from cortex.common.errors import CortexError
from cortex.services.gateway.anthropic import ToolNameMap, to_openai_request

LONG_TOOL = "mcp__company-knowledge-base-production__search_engineering_design_documents_by_keyword"


def request(**fields) -> a.MessagesRequest:
    body = {"model": "claude-x", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return msgspec.convert(body, a.MessagesRequest)


def claude_code() -> a.MessagesRequest:
    return msgspec.convert(recorded_json("claude_code_request.json"), a.MessagesRequest)


def as_neuron_sees(req: o.ChatCompletionRequest) -> o.ChatCompletionRequest:
    """Through the wire: what the neuron decodes from the body the gateway sends."""
    return msgspec.json.decode(msgspec.json.encode(req), type=o.ChatCompletionRequest)


def test_claude_code_conversation_becomes_the_openai_conversation():
    out = as_neuron_sees(to_openai_request(claude_code(), model="demo-small"))
    roles = [m.role for m in out.messages]
    assert roles == ["system", "user", "assistant", "tool", "user", "assistant", "tool", "tool"]

    system, user, first_reply, bash_result, user_text, second_reply, docs, read = out.messages
    # System blocks (cache_control and all) joined into one system message.
    assert system.content == (
        "x-anthropic-billing-header: cc_version=2.0.14; cc_entrypoint=cli\n\n"
        "You are Claude Code, Anthropic's official CLI for Claude.\n\n"
        "You are an interactive CLI tool that helps users with software engineering tasks."
    )
    assert user.content.startswith("<system-reminder>")
    assert user.content.endswith("</system-reminder>\n\nWhy does the build fail?")

    # Thinking -> reasoning_content; text -> content; tool_use -> tool_calls (JSON string).
    assert first_reply.reasoning_content == "I should run the build to see the error."
    assert first_reply.content == "Let me run the build."
    [call] = first_reply.tool_calls
    assert call.id == "toolu_01Bash" and call.function.name == "Bash"
    assert json.loads(call.function.arguments) == {"command": "make build", "timeout": 120000}

    # A user turn with a tool result and text: the tool message first, then the text.
    assert bash_result.tool_call_id == "toolu_01Bash"
    assert bash_result.content == "error: missing header foo.h"
    assert user_text.content == "Check the design docs too."

    # Redacted thinking is dropped; two calls stay in order; content None with only calls.
    assert second_reply.content is None and second_reply.reasoning_content is None
    names = [c.function.name for c in second_reply.tool_calls]
    assert names[1] == "Read"
    assert len(names[0]) <= 64 and names[0] != LONG_TOOL

    # is_error marks the result; an image in a result stays an image part.
    assert docs.tool_call_id == "toolu_02Docs"
    assert docs.content == "Error: <tool_use_error>MCP server unavailable</tool_use_error>"
    assert read.tool_call_id == "toolu_03Read"
    assert isinstance(read.content, list)
    assert read.content[0] == o.TextPart("all: build\nbuild:\n\tcc -Iinclude main.c")
    assert read.content[1].image_url.url == "data:image/png;base64,iVBORw0KGgo="


def test_options_map_to_openai_fields():
    out = as_neuron_sees(to_openai_request(claude_code(), model="demo-small"))
    assert out.model == "demo-small"
    assert out.max_tokens == 32000
    assert out.temperature == 1
    assert out.stream is True
    assert out.stream_options == o.StreamOptions(include_usage=True)
    assert out.user == "user_3f9a_account__session_7c1e2d4b"
    assert out.tool_choice is None and out.parallel_tool_calls is None


def test_tools_become_functions_and_long_names_map_the_same_way_in_history():
    out = to_openai_request(claude_code())
    functions = [t.function for t in out.tools]
    assert [f.name for f in functions][:2] == ["Bash", "Read"]
    mapped = functions[2].name
    assert len(mapped) <= 64 and all(c.isalnum() or c in "_-" for c in mapped)
    assert functions[0].parameters["required"] == ["command"]
    assert functions[0].description.startswith("Executes a given bash command")
    history_call = out.messages[5].tool_calls[0]
    assert history_call.function.name == mapped  # the same stand-in as the declaration
    assert out.model == "claude-sonnet-4-5-20250929"  # no override: the client's name


def test_tool_name_map_is_reversible_and_collision_free():
    names = ToolNameMap(["ok_name", "dotted.name", "dotted_name", "x" * 100, "x" * 101])
    openai_names = [names.to_openai(n) for n in ["ok_name", "dotted.name", "dotted_name"]]
    assert openai_names[0] == "ok_name"
    assert openai_names[2] == "dotted_name"  # a valid name never yields to a stand-in
    assert openai_names[1] not in ("dotted.name", "dotted_name")
    long_a, long_b = names.to_openai("x" * 100), names.to_openai("x" * 101)
    assert long_a != long_b and len(long_a) == len(long_b) == 64
    for original in ["ok_name", "dotted.name", "dotted_name", "x" * 100, "x" * 101]:
        assert names.to_anthropic(names.to_openai(original)) == original
    assert names.to_anthropic("never_seen") == "never_seen"
    # Same tools, same stand-ins, on every request.
    again = ToolNameMap(["x" * 101, "dotted_name", "dotted.name", "x" * 100, "ok_name"])
    assert again.to_openai("dotted.name") == openai_names[1]
    assert again.to_openai("x" * 100) == long_a


TOOLS = [{"name": "get_weather", "input_schema": {"type": "object", "properties": {}}}]


@pytest.mark.parametrize(
    ("choice", "expected", "parallel"),
    [
        ({"type": "auto"}, "auto", None),
        ({"type": "any"}, "required", None),
        ({"type": "none"}, "none", None),
        (
            {"type": "tool", "name": "get_weather"},
            o.NamedToolChoice(function=o.NamedFunction("get_weather")),
            None,
        ),
        ({"type": "any", "disable_parallel_tool_use": True}, "required", False),
        ({"type": "auto", "disable_parallel_tool_use": True}, "auto", False),
    ],
)
def test_tool_choice(choice, expected, parallel):
    out = to_openai_request(request(tools=TOOLS, tool_choice=choice))
    assert out.tool_choice == expected
    assert out.parallel_tool_calls is parallel


def test_tool_choice_naming_an_undeclared_tool_is_refused():
    with pytest.raises(CortexError) as info:
        to_openai_request(request(tools=TOOLS, tool_choice={"type": "tool", "name": "nope"}))
    assert info.value.status == 400 and info.value.param == "tool_choice.name"
    assert "'nope'" in info.value.message and "'get_weather'" in info.value.message


@pytest.mark.parametrize("kind", ["auto", "none"])
def test_auto_or_none_without_tools_is_no_tool_choice(kind):
    out = to_openai_request(request(tool_choice={"type": kind}))
    assert out.tool_choice is None and out.tools is None


def test_any_without_tools_is_refused():
    with pytest.raises(CortexError) as info:
        to_openai_request(request(tool_choice={"type": "any"}))
    assert info.value.param == "tool_choice" and "declares no tools" in info.value.message


def test_sampling_and_stop_fields():
    out = to_openai_request(
        request(temperature=0.2, top_p=0.9, top_k=40, stop_sequences=["\n\nHuman:", "END"])
    )
    assert (out.temperature, out.top_p, out.top_k) == (0.2, 0.9, 40)
    assert out.stop == ["\n\nHuman:", "END"]
    assert out.stream is False and out.stream_options is None
    assert out.max_tokens == 64


def test_unset_options_stay_unset_so_the_neuron_applies_its_defaults():
    body = msgspec.json.decode(msgspec.json.encode(to_openai_request(request())))
    assert body == {
        "model": "claude-x",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hi"}],
    }


def test_images_and_documents():
    out = to_openai_request(
        request(
            messages=[
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "image",
                            "source": {
                                "type": "base64",
                                "media_type": "image/jpeg",
                                "data": "/9j/",
                            },
                        },
                        {"type": "image", "source": {"type": "url", "url": "https://x/cat.png"}},
                        {
                            "type": "document",
                            "title": "Notes",
                            "source": {"type": "text", "media_type": "text/plain", "data": "abc"},
                        },
                        {"type": "text", "text": "Describe these."},
                    ],
                }
            ]
        )
    )
    [user] = out.messages
    assert [type(p) for p in user.content] == [o.ImagePart, o.ImagePart, o.TextPart, o.TextPart]
    assert user.content[0].image_url.url == "data:image/jpeg;base64,/9j/"
    assert user.content[1].image_url.url == "https://x/cat.png"
    assert user.content[2].text == "Notes\n\nabc"


@pytest.mark.parametrize(
    ("block", "says"),
    [
        (
            {"type": "image", "source": {"type": "file", "file_id": "file_1"}},
            "base64 or a URL",
        ),
        (
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBER"},
            },
            "text source",
        ),
    ],
)
def test_sources_a_local_model_cannot_read_are_refused_clearly(block, says):
    with pytest.raises(CortexError) as info:
        to_openai_request(request(messages=[{"role": "user", "content": [block]}]))
    assert info.value.status == 400
    assert info.value.param == "messages[0].content[0].source"
    assert says in info.value.message


def test_tool_use_in_a_user_turn_is_refused():
    with pytest.raises(CortexError) as info:
        to_openai_request(
            request(
                messages=[
                    {
                        "role": "user",
                        "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
                    }
                ]
            )
        )
    assert info.value.param == "messages[0].content[0]"


def test_tool_results_keep_their_order_and_empty_or_error_results_say_so():
    out = to_openai_request(
        request(
            messages=[
                {"role": "user", "content": "go"},
                {
                    "role": "assistant",
                    "content": [
                        {"type": "tool_use", "id": "a", "name": "f", "input": {}},
                        {"type": "tool_use", "id": "b", "name": "f", "input": {"x": 1}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {"type": "tool_result", "tool_use_id": "b", "content": ""},
                        {"type": "tool_result", "tool_use_id": "a", "is_error": True},
                    ],
                },
            ]
        )
    )
    assert [m.role for m in out.messages] == ["user", "assistant", "tool", "tool"]
    assert out.messages[1].tool_calls[0].function.arguments == "{}"
    assert [(m.tool_call_id, m.content) for m in out.messages[2:]] == [("b", ""), ("a", "Error")]


def test_structured_output_maps_to_response_format():
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}}
    out = to_openai_request(
        request(output_config={"format": {"type": "json_schema", "schema": schema}})
    )
    assert out.response_format == o.ResponseFormat(
        type="json_schema", json_schema={"name": "output", "schema": schema}
    )
