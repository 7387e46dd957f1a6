"""The whole chain on real ids: TokenPipeline -> ChatStreamProjector -> the openai SDK."""

from __future__ import annotations

import json

import jsonschema
import msgspec
import torch
from openai.types.chat import ChatCompletionChunk
from pipeline_support import encode, sdk_stream

from cortex.common.openai import Tool
from cortex.common.sse import iter_events
from cortex.services.neuron.pipeline.constrain import (
    ConstrainedSampler,
    Constraint,
    tool_call_grammar,
)
from cortex.services.neuron.pipeline.decode import TokenPipeline
from cortex.services.neuron.pipeline.events import Finish
from cortex.services.neuron.pipeline.project import ChatStreamProjector
from cortex.services.neuron.pipeline.sampling import Sampler, SamplingParams
from cortex.services.neuron.pipeline.vocab import vocab_for

EMOJI = "\N{SMILING FACE WITH SUNGLASSES}"


def stream(tokenizer, markers, eos_id, ids, *, engine_reason="stop", **options) -> bytes:
    """What the neuron does per request: ids in, SSE bytes out."""
    pipeline = TokenPipeline(tokenizer, markers, eos_ids=[eos_id], **options)
    projector = ChatStreamProjector("demo-tiny", "chatcmpl-chain", 1700000000, include_usage=True)
    out = [projector.start()]
    used = 0
    for token_id in ids:
        used += 1
        for event in pipeline.push(token_id):
            out.append(projector.feed(event))
        if pipeline.stopped:
            break
    for event in pipeline.close():
        out.append(projector.feed(event))
    finish = Finish(
        reason=pipeline.finish_reason(engine_reason),
        prompt_tokens=3,
        completion_tokens=used,
        stop_sequence=pipeline.matched_stop,
    )
    out.append(projector.feed(finish))
    return b"".join(out)


def test_every_chunk_validates_as_the_sdks_chunk_model(tokenizer, markers, eos_id):
    text = f'<think>x</think>Hi {EMOJI}<tool_call>{{"name": "f"}}</tool_call>'
    payloads = [
        e.data for e in iter_events([stream(tokenizer, markers, eos_id, encode(tokenizer, text))])
    ]
    assert payloads[-1] == "[DONE]"
    chunks = [ChatCompletionChunk.model_validate(json.loads(p)) for p in payloads[:-1]]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].usage is not None and chunks[-2].choices[0].finish_reason == "tool_calls"


def test_reasoning_text_and_a_tool_call_through_the_chain(tokenizer, markers, eos_id):
    body = '{"name": "lookup", "arguments": {"q": "caf\u00e9"}}'
    text = f"<think>\nplan {EMOJI}\n</think>\n\nSure {EMOJI}!\n<tool_call>\n{body}\n</tool_call>"
    ids = [*encode(tokenizer, text), eos_id]
    chunks = sdk_stream(stream(tokenizer, markers, eos_id, ids))
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    reasoning = "".join((d.model_extra or {}).get("reasoning_content") or "" for d in deltas)
    content = "".join(d.content or "" for d in deltas)
    calls = [call for d in deltas for call in d.tool_calls or []]
    assert reasoning == f"plan {EMOJI}\n"
    assert content == f"Sure {EMOJI}!\n"
    assert [c.function.name for c in calls] == ["lookup"]
    assert json.loads(calls[0].function.arguments) == {"q": "caf\u00e9"}
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage.completion_tokens == len(ids)


def test_stop_string_through_the_chain(tokenizer, markers, eos_id):
    ids = encode(tokenizer, "alpha beta gamma delta")
    data = stream(tokenizer, markers, eos_id, ids, engine_reason="length", stop_strings=["gam"])
    chunks = sdk_stream(data)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "alpha beta "
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-2].choices[0].model_extra["stop_reason"] == "gam"


def test_forced_tool_call_from_random_logits_through_the_chain(tokenizer, markers, eos_id):
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer", "maximum": 7}},
        "required": ["city", "days"],
    }
    tools = msgspec.convert(
        [{"type": "function", "function": {"name": "forecast", "parameters": schema}}], list[Tool]
    )
    vocab = vocab_for(tokenizer)
    constraint = Constraint(tool_call_grammar(tools, "required"), vocab, [eos_id])
    sampler = ConstrainedSampler(Sampler(SamplingParams(seed=11), vocab.size), constraint)
    noise = torch.Generator().manual_seed(11)
    ids: list[int] = []
    while not constraint.done:
        ids.append(sampler.sample(torch.randn(vocab.size, generator=noise), ids))
    chunks = sdk_stream(stream(tokenizer, markers, eos_id, ids, expect_tool_call=True))
    calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [c.function.name for c in calls] == ["forecast"]
    jsonschema.validate(json.loads(calls[0].function.arguments), schema)
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert all(not (c.choices and c.choices[0].delta.content) for c in chunks)
