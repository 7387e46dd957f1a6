"""Constrained decoding with the demo tokenizer and random logits: always a valid call."""

from __future__ import annotations

import json

import jsonschema
import msgspec
import pytest
import torch
from pipeline_support import encode, run, tokenizer_without_markers

from cortex.common.errors import CortexError
from cortex.common.openai import ChatCompletionRequest, ResponseFormat, Tool
from cortex.services.neuron.pipeline.constrain import (
    ConstrainedSampler,
    Constraint,
    ConstraintError,
    request_grammar,
    response_format_grammar,
    tool_call_forced,
    tool_call_grammar,
)
from cortex.services.neuron.pipeline.decode import TokenPipeline
from cortex.services.neuron.pipeline.events import TextDelta, ToolCallDelta
from cortex.services.neuron.pipeline.sampling import Sampler, SamplingParams
from cortex.services.neuron.pipeline.schema import Limits, schema_grammar
from cortex.services.neuron.pipeline.vocab import TokenVocab

SCHEMAS = {
    "weather": {
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            "days": {"type": "integer", "minimum": 1, "maximum": 14},
        },
        "required": ["city"],
    },
    "numbers": {
        "type": "object",
        "properties": {
            "ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
            "delta": {"type": "number", "minimum": -2.5, "exclusiveMaximum": -1},
            "count": {"type": "integer", "minimum": -3, "maximum": 250},
            "big": {"type": "integer", "minimum": 10_000_000},
            "flag": {"type": "boolean"},
            "nothing": {"type": "null"},
        },
        "required": ["ratio", "delta", "count", "big", "flag", "nothing"],
    },
    "nested": {
        "type": "object",
        "properties": {
            "user": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "minLength": 2, "maxLength": 8},
                    "tags": {
                        "type": "array",
                        "items": {"type": "string", "maxLength": 6},
                        "maxItems": 3,
                    },
                },
                "required": ["name", "tags"],
            },
            "points": {
                "type": "array",
                "items": {"type": "integer"},
                "minItems": 2,
                "maxItems": 4,
            },
        },
        "required": ["user", "points"],
    },
    "alternatives": {
        "type": "object",
        "properties": {
            "target": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "integer"}]},
            "mode": {"oneOf": [{"const": "fast"}, {"const": "slow"}]},
            "limit": {"type": ["integer", "null"]},
            "item": {"$ref": "#/$defs/item"},
            "merged": {"allOf": [{"properties": {"a": {"type": "boolean"}}, "required": ["a"]}]},
        },
        "required": ["target", "mode", "limit", "item", "merged"],
        "$defs": {
            "item": {
                "type": "object",
                "properties": {"id": {"type": "integer"}},
                "required": ["id"],
            }
        },
    },
    "free_form": {"type": "object", "additionalProperties": {"type": "integer"}},
    "optional_only": {
        "type": "object",
        "properties": {"a": {"type": "string"}, "b": {"type": "integer"}, "c": {"type": "boolean"}},
    },
}


def as_tools(entries: dict[str, dict | None]) -> list[Tool]:
    raw = []
    for name, schema in entries.items():
        function = {"name": name, "description": f"tool {name}"}
        if schema is not None:
            function["parameters"] = schema
        raw.append({"type": "function", "function": function})
    return msgspec.convert(raw, list[Tool])


@pytest.fixture(scope="module")
def vocab(tokenizer) -> TokenVocab:
    return TokenVocab(tokenizer)


def generate(
    vocab, grammar, eos_id, *, seed: int, params: SamplingParams | None = None, limit=3000
):
    """Drive the constraint with random logits, as an engine would: token ids out."""
    constraint = Constraint(grammar, vocab, [eos_id])
    params = params or SamplingParams(temperature=1.0, seed=seed)
    sampler = ConstrainedSampler(Sampler(params, vocab.size), constraint)
    noise = torch.Generator().manual_seed(seed)
    ids: list[int] = []
    while not constraint.done:
        assert len(ids) < limit, "the constrained output did not end"
        logits = torch.randn(vocab.size, generator=noise) * 4
        ids.append(sampler.sample(logits, ids))
    assert ids[-1] == eos_id
    return ids


def decode_call(tokenizer, markers, eos_id, ids) -> ToolCallDelta:
    pipeline = TokenPipeline(tokenizer, markers, eos_ids=[eos_id], expect_tool_call=True)
    events = run(pipeline, ids)
    assert len(events) == 1 and isinstance(events[0], ToolCallDelta), (
        events,
        tokenizer.decode(ids, skip_special_tokens=False),
    )
    assert pipeline.finish_reason("stop") == "tool_calls"
    return events[0]


@pytest.mark.parametrize("name", sorted(SCHEMAS))
@pytest.mark.parametrize("seed", range(6))
def test_forced_call_with_random_logits_is_valid_for_the_schema(
    tokenizer, markers, eos_id, vocab, name, seed
):
    schema = SCHEMAS[name]
    grammar = tool_call_grammar(as_tools({name: schema}), "required")
    ids = generate(vocab, grammar, eos_id, seed=seed)
    call = decode_call(tokenizer, markers, eos_id, ids)
    assert call.name == name
    jsonschema.validate(json.loads(call.arguments), schema)


def test_seeds_explore_the_choices_the_model_is_free_to_make(tokenizer, markers, eos_id, vocab):
    grammar = tool_call_grammar(as_tools({"w": SCHEMAS["weather"]}), "required")
    seen = set()
    for seed in range(12):
        arguments = json.loads(
            decode_call(
                tokenizer, markers, eos_id, generate(vocab, grammar, eos_id, seed=seed)
            ).arguments
        )
        seen.add(tuple(sorted(arguments)))
    assert len(seen) > 1  # optional properties are the model's choice, not the grammar's


def test_required_picks_among_all_tools_and_a_named_choice_forces_one(
    tokenizer, markers, eos_id, vocab
):
    tools = as_tools({"alpha": SCHEMAS["weather"], "beta": None, "gamma": SCHEMAS["numbers"]})
    names = set()
    for seed in range(10):
        ids = generate(vocab, tool_call_grammar(tools, "required"), eos_id, seed=seed)
        names.add(decode_call(tokenizer, markers, eos_id, ids).name)
    assert names <= {"alpha", "beta", "gamma"} and len(names) > 1
    request = chat_request(
        tools=tools, tool_choice={"type": "function", "function": {"name": "gamma"}}
    )
    assert tool_call_forced(request)
    for seed in range(3):
        call = decode_call(
            tokenizer, markers, eos_id, generate(vocab, request_grammar(request), eos_id, seed=seed)
        )
        assert call.name == "gamma"
        jsonschema.validate(json.loads(call.arguments), SCHEMAS["numbers"])


def test_function_without_parameters_gets_empty_arguments(tokenizer, markers, eos_id, vocab):
    ids = generate(vocab, tool_call_grammar(as_tools({"ping": None}), "required"), eos_id, seed=0)
    assert decode_call(tokenizer, markers, eos_id, ids).arguments == "{}"


def test_greedy_sampling_is_constrained_too(tokenizer, markers, eos_id, vocab):
    grammar = tool_call_grammar(as_tools({"n": SCHEMAS["nested"]}), "required")
    ids = generate(vocab, grammar, eos_id, seed=3, params=SamplingParams(temperature=0.0))
    jsonschema.validate(
        json.loads(decode_call(tokenizer, markers, eos_id, ids).arguments), SCHEMAS["nested"]
    )


def test_structure_is_forced_and_free_tokens_are_checked(tokenizer, eos_id, vocab):
    grammar = tool_call_grammar(as_tools({"get": SCHEMAS["weather"]}), "required")
    constraint = Constraint(grammar, vocab, [eos_id])
    tool_open = tokenizer.token_to_id("<tool_call>")
    assert constraint.forced() == tool_open  # the marker token itself
    assert not constraint.is_allowed(tokenizer.encode("Hello", add_special_tokens=False).ids[0])
    forced = constraint.forced_ids()
    assert tokenizer.decode(forced, skip_special_tokens=False).startswith(
        '<tool_call>\n{"name": "get", "arguments": {"city": "'
    )
    for token_id in forced:
        constraint.advance(token_id)
    assert constraint.forced() is None  # inside the city string: the model's choice
    assert constraint.is_allowed(tokenizer.encode("Paris", add_special_tokens=False).ids[0])
    assert not constraint.is_allowed(tool_open)  # markers never appear in free text
    assert not constraint.is_allowed(eos_id)
    with pytest.raises(ConstraintError):
        constraint.advance(eos_id)


@pytest.mark.parametrize(
    ("schema", "prefix"),
    [
        (SCHEMAS["numbers"], ""),  # a number: only digits
        ({"type": "string", "maxLength": 6}, ""),  # a string with room for 6 characters
        ({"type": "string", "maxLength": 6}, "ab\u00e9"),  # ... after 3 of them
        ({"type": "string", "maxLength": 6}, "\u4e2d\u6587\u5b57xyz"),  # full: only the quote
    ],
)
def test_allowed_ids_agree_with_is_allowed(tokenizer, vocab, eos_id, schema, prefix):
    constraint = Constraint(schema_grammar(schema), vocab, [eos_id])
    for token_id in constraint.forced_ids():
        constraint.advance(token_id)
    for token_id in encode(tokenizer, prefix):
        constraint.advance(token_id)
    allowed = set(constraint.allowed_ids())
    assert allowed == {t for t in range(vocab.size) if constraint.is_allowed(t)}
    assert allowed


def test_allowed_tokens_in_a_number_are_digits(vocab, eos_id):
    constraint = Constraint(schema_grammar(SCHEMAS["numbers"]), vocab, [eos_id])
    for token_id in constraint.forced_ids():
        constraint.advance(token_id)
    assert all(vocab.token_bytes[t][:1] in b"0123456789" for t in constraint.allowed_ids())


def test_tokenizer_without_marker_tokens_gets_the_marker_text(tokenizer, eos_id):
    from cortex.services.neuron.pipeline.markers import Markers

    plain = tokenizer_without_markers(tokenizer)
    vocab = TokenVocab(plain)
    grammar = tool_call_grammar(as_tools({"get": SCHEMAS["weather"]}), "required")
    ids = generate(vocab, grammar, eos_id, seed=1)
    assert plain.token_to_id("<tool_call>") not in ids
    assert plain.decode(ids, skip_special_tokens=True).startswith("<tool_call>\n{")
    call = decode_call(plain, Markers.probe(plain), eos_id, ids)
    jsonschema.validate(json.loads(call.arguments), SCHEMAS["weather"])


def test_close_reasoning_first_when_the_prompt_opened_it(tokenizer, markers, eos_id, vocab):
    grammar = tool_call_grammar(as_tools({"ping": None}), "required", close_reasoning=True)
    ids = generate(vocab, grammar, eos_id, seed=0)
    pipeline = TokenPipeline(tokenizer, markers, eos_ids=[eos_id], start_in_reasoning=True)
    events = run(pipeline, ids)
    assert [type(e) for e in events] == [ToolCallDelta]


# ---------------------------------------------------------------------- response_format


def chat_request(**fields) -> ChatCompletionRequest:
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], **fields}
    return msgspec.convert(body, ChatCompletionRequest)


@pytest.mark.parametrize("seed", range(4))
def test_json_object_and_json_schema_output(tokenizer, markers, eos_id, vocab, seed):
    schema = SCHEMAS["nested"]
    cases = [
        (chat_request(response_format={"type": "json_object"}), {"type": "object"}),
        (
            chat_request(
                response_format={
                    "type": "json_schema",
                    "json_schema": {"name": "n", "schema": schema},
                }
            ),
            schema,
        ),
    ]
    for request, expected in cases:
        ids = generate(vocab, request_grammar(request), eos_id, seed=seed)
        events = run(TokenPipeline(tokenizer, markers, eos_ids=[eos_id]), ids)
        assert all(isinstance(e, TextDelta) for e in events)
        jsonschema.validate(json.loads("".join(e.text for e in events)), expected)


def test_no_constraint_for_plain_requests():
    assert request_grammar(chat_request()) is None
    assert request_grammar(chat_request(tools=[], tool_choice="auto")) is None
    assert response_format_grammar(ResponseFormat(type="text")) is None


def test_small_limits_still_give_valid_output(tokenizer, markers, eos_id, vocab):
    limits = Limits(string_chars=3, array_items=1, object_keys=1, int_digits=2, depth=1)
    grammar = tool_call_grammar(as_tools({"f": SCHEMAS["free_form"]}), "required", limits=limits)
    for seed in range(4):
        call = decode_call(tokenizer, markers, eos_id, generate(vocab, grammar, eos_id, seed=seed))
        arguments = json.loads(call.arguments)
        assert len(arguments) <= 1 and all(abs(v) < 100 for v in arguments.values())


# ---------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"tool_choice": "required"}, "`tools` is empty"),
        (
            {
                "tools": [{"type": "function", "function": {"name": "a"}}],
                "tool_choice": {"type": "function", "function": {"name": "b"}},
            },
            "'b', which is not in `tools`",
        ),
    ],
)
def test_impossible_tool_choices_are_a_400(fields, message):
    with pytest.raises(CortexError) as caught:
        request_grammar(chat_request(**fields))
    assert caught.value.status == 400 and caught.value.param == "tool_choice"
    assert message in caught.value.message


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"type": "integer", "minimum": 5, "maximum": 4}, "No integer"),
        ({"type": "number", "exclusiveMinimum": 1, "exclusiveMaximum": 1}, "No number"),
        ({"type": "object", "properties": {"a": {"$ref": "#"}}}, "Recursive"),
        ({"$ref": "#/$defs/missing"}, "points to nothing"),
        ({"type": "tensor"}, "Unknown JSON Schema type"),
        ({"type": "string", "minLength": 5, "maxLength": 2}, "minLength"),
    ],
)
def test_unsatisfiable_or_unsupported_schemas_are_a_400(schema, message):
    tools = as_tools({"f": schema})
    with pytest.raises(CortexError) as caught:
        tool_call_grammar(tools, "required")
    assert caught.value.status == 400 and message in caught.value.message
    assert caught.value.param == "tools[0].function.parameters"
