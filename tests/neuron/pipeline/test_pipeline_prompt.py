"""Chat templates and PromptBuilder on the demo model (and variants of its files)."""

from __future__ import annotations

import json
import shutil

import msgspec
import pytest

from cortex.common.errors import CortexError
from cortex.common.openai import ChatMessage, Tool
from cortex.services.neuron.pipeline.prompt import PromptBuilder, message_dicts
from cortex.services.neuron.pipeline.template import render_chat

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "Zürich or Paris"}},
            "required": ["city"],
        },
    },
}

CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Weather in "}, {"type": "text", "text": "Zürich?"}],
    },
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city": "Zürich"}'},
            }
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "22 °C"},
]


def messages(raw: list[dict]) -> list[ChatMessage]:
    return msgspec.convert(raw, list[ChatMessage])


def tools(raw: list[dict]) -> list[Tool]:
    return msgspec.convert(raw, list[Tool])


@pytest.fixture(scope="module")
def builder(demo_models) -> PromptBuilder:
    return PromptBuilder(demo_models.tiny)


@pytest.fixture
def model_copy(demo_models, tmp_path):
    """A copy of the demo model whose tokenizer_config.json a test may edit."""

    def make(edit=None, *, template_file: str | None = None):
        target = tmp_path / "model"
        shutil.copytree(demo_models.tiny, target)
        config_path = target / "tokenizer_config.json"
        config = json.loads(config_path.read_text())
        if edit is not None:
            edit(config)
        config_path.write_text(json.dumps(config))
        if template_file is not None:
            (target / "chat_template.jinja").write_text(template_file)
        return target

    return make


def test_renders_system_user_assistant_tool_calls_tool_results_and_tools(builder):
    prompt = builder.chat_prompt(messages(CONVERSATION), tools=tools([WEATHER_TOOL]))
    text = prompt.text
    assert text.startswith("<|im_start|>system\nBe brief.\n\n# Tools")
    # tools as OpenAI dicts through HF's tojson: type included, non-ASCII not escaped
    assert json.dumps(WEATHER_TOOL, ensure_ascii=False) in text
    assert "<|im_start|>user\nWeather in Zürich?<|im_end|>" in text
    # arguments reach the template as a mapping, which it serialises with tojson
    assert (
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Zürich"}}\n</tool_call>'
        in text
    )
    assert "<tool_response>\n22 °C\n</tool_response>" in text
    assert text.endswith("<|im_start|>assistant\n")
    assert prompt.ids == builder.encode(text)
    assert prompt.ids[0] == builder.tokenizer.token_to_id("<|im_start|>")  # specials parsed
    assert prompt.start_in_reasoning is False


def test_message_conversion_follows_hf_conventions():
    raw = [
        {"role": "developer", "content": "rules"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "why",
            "tool_calls": [
                {"id": "c", "type": "function", "function": {"name": "f", "arguments": "not json"}}
            ],
        },
        {"role": "tool", "tool_call_id": "c", "name": "f", "content": "result"},
    ]
    converted = message_dicts(messages(raw))
    assert converted[0] == {"role": "system", "content": "rules"}
    assert converted[1]["tool_calls"][0]["function"]["arguments"] == "not json"
    assert converted[1]["reasoning_content"] == "why"
    assert converted[2] == {"role": "tool", "content": "result", "name": "f", "tool_call_id": "c"}


def test_images_are_refused_with_a_clear_400(builder):
    raw = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
            ],
        }
    ]
    with pytest.raises(CortexError) as caught:
        builder.render(messages(raw))
    assert caught.value.status == 400
    assert "does not accept images" in caught.value.message
    assert caught.value.param == "messages[0].content[1]"


def test_empty_messages_are_a_400(builder):
    with pytest.raises(CortexError) as caught:
        builder.render([])
    assert caught.value.status == 400 and caught.value.param == "messages"


def test_model_without_chat_template_gives_a_clear_error(model_copy):
    builder = PromptBuilder(model_copy(lambda config: config.pop("chat_template")))
    assert not builder.has_chat_template
    with pytest.raises(CortexError) as caught:
        builder.chat_prompt(messages([{"role": "user", "content": "hi"}]))
    error = caught.value
    assert error.status == 400 and error.code == "chat_template_missing"
    assert "no chat template" in error.message and "/v1/completions" in error.message
    # completions still work on such a model
    assert builder.completion_ids("plain prompt") == builder.encode("plain prompt")


def test_chat_template_file_wins_over_tokenizer_config(model_copy):
    builder = PromptBuilder(model_copy(template_file="FILE:{{ messages[0].content }}"))
    assert builder.render(messages([{"role": "user", "content": "x"}])) == "FILE:x"


def test_named_templates_pick_tool_use_when_tools_are_given(model_copy):
    named = [
        {"name": "default", "template": "plain:{{ messages[0].content }}"},
        {"name": "tool_use", "template": "tools:{{ tools[0].function.name }}"},
    ]
    builder = PromptBuilder(model_copy(lambda config: config.update(chat_template=named)))
    user = messages([{"role": "user", "content": "x"}])
    assert builder.render(user) == "plain:x"
    assert builder.render(user, tools=tools([WEATHER_TOOL])) == "tools:get_weather"


def test_raise_exception_becomes_a_400_with_the_templates_message(model_copy):
    template = (
        "{% if messages[0].role != 'user' %}"
        "{{ raise_exception('Conversations must start with a user message') }}{% endif %}ok"
    )
    builder = PromptBuilder(model_copy(lambda config: config.update(chat_template=template)))
    with pytest.raises(CortexError) as caught:
        builder.render(messages([{"role": "assistant", "content": "hi"}]))
    assert caught.value.status == 400
    assert "Conversations must start with a user message" in caught.value.message
    assert builder.render(messages([{"role": "user", "content": "hi"}])) == "ok"


def test_template_that_does_not_compile_names_the_problem(model_copy):
    builder = PromptBuilder(model_copy(lambda c: c.update(chat_template="{% if %}")))
    with pytest.raises(CortexError) as caught:
        builder.render(messages([{"role": "user", "content": "hi"}]))
    assert caught.value.status == 500 and "does not compile" in caught.value.message


def test_environment_behaves_like_hugging_faces():
    template = (
        "{{ bos_token }}{{ messages[0] | tojson }}|{{ {'a': 1} | tojson(indent=2) }}|"
        "{% for m in messages %}{% if loop.first %}{% continue %}{% endif %}{{ m.content }}"
        "{% endfor %}|{% generation %}gen{% endgeneration %}|{{ strftime_now('%Y') | length }}"
        "|{{ eos_token }}|{{ unk_token }}"
    )
    rendered = render_chat(
        template,
        [{"role": "user", "content": "é<b>"}, {"role": "user", "content": "second"}],
        special_tokens={"bos_token": "<s>", "eos_token": "</s>"},
    )
    assert rendered == '<s>{"role": "user", "content": "é<b>"}|{\n  "a": 1\n}|second|gen|4|</s>|'


def test_sandbox_refuses_unsafe_templates():
    with pytest.raises(CortexError) as caught:
        render_chat("{{ messages.__class__.__mro__ }}", [{"role": "user", "content": "x"}])
    assert caught.value.status == 400


def test_generation_prompt_that_opens_think_is_detected(model_copy):
    template = (
        "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n<think>\n{% endif %}"
    )
    builder = PromptBuilder(model_copy(lambda c: c.update(chat_template=template)))
    assert builder.generation_opens_reasoning
    prompt = builder.chat_prompt(messages([{"role": "user", "content": "hi"}]))
    assert prompt.start_in_reasoning
    assert not builder.chat_prompt(
        messages([{"role": "user", "content": "hi"}]), add_generation_prompt=False
    ).start_in_reasoning


def test_eos_ids_come_from_generation_config_and_tokenizer(builder):
    ids = builder.eos_token_ids
    assert builder.tokenizer.token_to_id("<|im_end|>") in ids
    assert builder.tokenizer.token_to_id("<|endoftext|>") in ids


def test_tokenize_messages_counts_exactly_what_chat_renders(builder):
    counted = builder.tokenize_messages(CONVERSATION, [WEATHER_TOOL])
    rendered = builder.chat_prompt(messages(CONVERSATION), tools=tools([WEATHER_TOOL]))
    assert counted == rendered.ids
    assert builder.count(rendered.text) == len(counted)


def test_tokenize_messages_names_a_bad_field(builder):
    with pytest.raises(CortexError) as caught:
        builder.tokenize_messages([{"role": "wizard", "content": "x"}])
    assert caught.value.status == 400
    assert "messages[0].role" in caught.value.message


def test_completion_prompt_ids_are_checked_against_the_vocabulary(builder):
    assert builder.completion_ids([1, 2, 3]) == [1, 2, 3]
    with pytest.raises(CortexError) as caught:
        builder.completion_ids([1, 10**9])
    assert caught.value.status == 400 and caught.value.param == "prompt"


# Mistral-style: a system message only at the start, anything else raises.
LEADING_SYSTEM_ONLY = (
    "{% for m in messages %}"
    "{% if m.role == 'system' and not loop.first %}"
    "{{ raise_exception('System message must be at the beginning.') }}"
    "{% endif %}[{{ m.role }}]{{ m.content }}"
    "{% endfor %}"
)
# Reads messages[0] as the system prompt and silently skips later system turns.
DROPS_LATER_SYSTEM = (
    "{% if messages[0].role == 'system' %}<<SYS>>{{ messages[0].content }}<</SYS>>{% endif %}"
    "{% for m in messages %}{% if m.role in ['user', 'assistant'] %}"
    "[{{ m.role }}]{{ m.content }}{% endif %}{% endfor %}"
)
MID_SYSTEM = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "hi"},
    {"role": "system", "content": "Agents: Explore, Plan."},
    {"role": "assistant", "content": "hello"},
    {"role": "developer", "content": "Answer in French."},
    {"role": "user", "content": "again"},
]


def test_a_later_system_message_stays_in_place_where_the_template_takes_it(builder):
    text = builder.render(messages(MID_SYSTEM))
    first_user = text.index("<|im_start|>user\nhi")
    assert text.index("<|im_start|>system\nAgents: Explore, Plan.<|im_end|>") > first_user
    assert "<|im_start|>system\nAnswer in French." in text


@pytest.mark.parametrize("template", [LEADING_SYSTEM_ONLY, DROPS_LATER_SYSTEM])
def test_a_template_with_only_a_leading_system_message_gets_the_later_ones_folded(
    model_copy, template
):
    builder = PromptBuilder(model_copy(lambda config: config.update(chat_template=template)))
    text = builder.render(messages(MID_SYSTEM))
    folded = "Be brief.\n\nAgents: Explore, Plan.\n\nAnswer in French."
    assert folded in text
    assert text.count("Agents: Explore") == 1
    assert text.index(folded) < text.index("[user]hi") < text.index("[user]again")
    # Without a leading system message one is made for the later ones.
    text = builder.render(messages(MID_SYSTEM[1:]))
    assert text.index("Agents: Explore, Plan.\n\nAnswer in French.") < text.index("[user]hi")
