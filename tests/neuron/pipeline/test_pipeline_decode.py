"""TokenPipeline over real token ids of the demo tokenizer."""

from __future__ import annotations

import json

import pytest
from pipeline_support import encode, run, tokenizer_with_special_markers, tokenizer_without_markers

from cortex.services.neuron.pipeline.decode import TokenPipeline
from cortex.services.neuron.pipeline.events import ReasoningDelta, TextDelta, ToolCallDelta
from cortex.services.neuron.pipeline.markers import Markers

EMOJI = "\N{GRINNING FACE}"  # 4 UTF-8 bytes


def texts(events, kind=TextDelta) -> str:
    return "".join(event.text for event in events if isinstance(event, kind))


def calls(events) -> list[ToolCallDelta]:
    return [event for event in events if isinstance(event, ToolCallDelta)]


@pytest.fixture
def pipe(tokenizer, markers, eos_id):
    def make(**options) -> TokenPipeline:
        options.setdefault("eos_ids", [eos_id])
        return TokenPipeline(tokenizer, markers, **options)

    return make


def byte_token(tokenizer, byte: int) -> int:
    """The byte-level BPE token of one raw byte (GPT-2's printable byte alphabet)."""
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet(), key=lambda ch: _byte_of(ch))
    return tokenizer.token_to_id(alphabet[byte])


def _byte_of(char: str) -> int:
    from cortex.services.neuron.pipeline.vocab import _byte_level_decoding

    return _byte_level_decoding()[char]


# ---------------------------------------------------------------------- UTF-8


def test_emoji_split_across_tokens_is_emitted_whole(tokenizer, pipe):
    ids = encode(tokenizer, f"Hi {EMOJI}!")
    # The demo tokenizer splits the emoji's bytes over tokens that decode to nothing whole.
    assert not any(EMOJI in tokenizer.decode([i]) for i in ids)
    pipeline = pipe()
    pushed = [pipeline.push(i) for i in ids]
    assert all("\ufffd" not in e.text for events in pushed for e in events)
    assert texts([e for events in pushed for e in events] + pipeline.close()) == f"Hi {EMOJI}!"
    emoji_events = [e for events in pushed for e in events if EMOJI in e.text]
    assert len(emoji_events) == 1


def test_emoji_from_single_byte_tokens_is_held_until_complete(tokenizer, pipe):
    byte_ids = [byte_token(tokenizer, b) for b in EMOJI.encode()]
    assert len(set(byte_ids)) == 4
    pipeline = pipe()
    for token_id in byte_ids[:3]:
        assert pipeline.push(token_id) == []  # an incomplete character is never cut
    assert pipeline.push(byte_ids[3]) == [TextDelta(EMOJI)]


def test_broken_utf8_and_unknown_ids_never_crash(tokenizer, pipe):
    stray = byte_token(tokenizer, 0x98)  # a continuation byte with no lead
    pipeline = pipe()
    events = run(pipeline, [stray, 10_000_000, *encode(tokenizer, "ok")])
    assert texts(events).endswith("ok")


# ---------------------------------------------------------------------- reasoning


def test_think_block_becomes_reasoning(tokenizer, pipe):
    ids = encode(tokenizer, f"<think>\nI reason {EMOJI}</think>\n\nAnswer.")
    events = run(pipe(), ids)
    assert texts(events, ReasoningDelta) == f"I reason {EMOJI}"
    assert texts(events) == "Answer."
    first_answer = next(i for i, e in enumerate(events) if isinstance(e, TextDelta))
    assert all(isinstance(e, ReasoningDelta) for e in events[:first_answer])


def test_reasoning_opened_by_the_prompt(tokenizer, pipe):
    events = run(pipe(start_in_reasoning=True), encode(tokenizer, "thinking</think>answer"))
    assert texts(events, ReasoningDelta) == "thinking"
    assert texts(events) == "answer"


def test_tokenizer_without_markers_passes_text_through(tokenizer, eos_id):
    pipeline = TokenPipeline(tokenizer, Markers.none(), eos_ids=[eos_id])
    text = '<think>x</think><tool_call>{"name": "f"}</tool_call>'
    events = run(pipeline, encode(tokenizer, text))
    assert texts(events) == text
    assert pipeline.finish_reason("stop") == "stop"


def test_markers_are_probed_from_the_tokenizer(tokenizer, markers):
    assert markers.think_open == tokenizer.token_to_id("<think>")
    assert markers.tool_close == tokenizer.token_to_id("</tool_call>")
    assert Markers.probe(tokenizer_without_markers(tokenizer)) == Markers.none()


# ---------------------------------------------------------------------- tool calls


def test_valid_tool_call_becomes_structured(tokenizer, pipe):
    body = '{"name": "get_weather", "arguments": {"city": "Zürich", "days": 3}}'
    pipeline = pipe()
    events = run(pipeline, encode(tokenizer, f"<tool_call>\n{body}\n</tool_call><|im_end|>"))
    [call] = calls(events)
    assert events == [call]
    assert call.index == 0 and call.name == "get_weather"
    assert call.id.startswith("call_") and len(call.id) > 10
    assert json.loads(call.arguments) == {"city": "Zürich", "days": 3}
    assert pipeline.finish_reason("stop") == "tool_calls"


def test_markers_flagged_special_are_routed_not_skipped(tokenizer, eos_id):
    special = tokenizer_with_special_markers(tokenizer)
    markers = Markers.probe(special)
    assert markers.reasoning and markers.tool_calls
    body = '{"name": "get_weather", "arguments": {"city": "Oslo"}}'
    text = f"<think>cold?</think>Let me check.<tool_call>\n{body}\n</tool_call><|im_end|>"
    pipeline = TokenPipeline(special, markers, eos_ids=[eos_id])
    events = run(pipeline, encode(special, text))
    assert texts(events, ReasoningDelta) == "cold?"
    assert texts(events) == "Let me check."
    [call] = calls(events)
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Oslo"}
    assert pipeline.finish_reason("stop") == "tool_calls"


def test_arguments_given_as_a_json_string_are_accepted(tokenizer, pipe):
    body = json.dumps({"name": "f", "arguments": json.dumps({"a": [1, 2]})})
    events = run(pipe(), encode(tokenizer, f"<tool_call>{body}</tool_call>"))
    assert json.loads(calls(events)[0].arguments) == {"a": [1, 2]}


@pytest.mark.parametrize(
    "body",
    [
        '{"name": "get_weather", "arguments": {"city": ',  # cut JSON
        '{"arguments": {}}',  # no name
        '["get_weather"]',  # not an object
        '{"name": "f", "arguments": [1]}',  # arguments not an object
    ],
)
def test_invalid_tool_call_falls_back_to_text(tokenizer, pipe, body):
    text = f"Before <tool_call>{body}</tool_call> after"
    pipeline = pipe()
    events = run(pipeline, encode(tokenizer, text))
    assert calls(events) == []
    assert texts(events) == text
    assert pipeline.finish_reason("stop") == "stop"


def test_two_calls_in_one_turn(tokenizer, pipe):
    one = '{"name": "a", "arguments": {"x": 1}}'
    two = '{"name": "b", "arguments": {}}'
    text = f"Let me check.\n<tool_call>\n{one}\n</tool_call>\n<tool_call>\n{two}\n</tool_call>\n"
    pipeline = pipe()
    events = run(pipeline, [*encode(tokenizer, text), pipeline_eos(tokenizer)])
    first, second = calls(events)
    assert (first.index, first.name, second.index, second.name) == (0, "a", 1, "b")
    assert first.id != second.id
    assert texts(events) == "Let me check.\n"  # whitespace between/after calls dropped
    assert pipeline.finish_reason("stop") == "tool_calls"


def pipeline_eos(tokenizer) -> int:
    return tokenizer.token_to_id("<|im_end|>")


def test_call_cut_by_the_length_limit_is_text(tokenizer, pipe):
    text = '<tool_call>\n{"name": "a", "argu'
    pipeline = pipe()
    events = run(pipeline, encode(tokenizer, text))
    assert texts(events) == text
    assert pipeline.finish_reason("length") == "length"


def test_tool_call_inside_reasoning_stays_reasoning(tokenizer, pipe):
    text = '<think>maybe <tool_call>{"name": "a"}</tool_call></think>no'
    events = run(pipe(), encode(tokenizer, text))
    assert calls(events) == []
    assert texts(events, ReasoningDelta) == 'maybe <tool_call>{"name": "a"}</tool_call>'
    assert texts(events) == "no"


# ---------------------------------------------------------------------- stops and EOS


def test_stop_string_spanning_tokens_is_held_back_and_not_emitted(tokenizer, pipe):
    ids = encode(tokenizer, "Hello STOP there")
    stop_ids = encode(tokenizer, "STOP")
    assert len(stop_ids) > 1  # the stop string spans several tokens
    pipeline = pipe(stop_strings=["STOP"])
    emitted = []
    for token_id in ids:
        emitted.extend(pipeline.push(token_id))
        assert "S" not in texts(emitted)  # never a piece of the stop string
        if pipeline.stopped:
            break
    emitted.extend(pipeline.close())
    assert texts(emitted) == "Hello "
    assert pipeline.stopped and pipeline.matched_stop == "STOP"
    assert pipeline.push(encode(tokenizer, "x")[0]) == []  # the engine must stop
    assert pipeline.finish_reason("length") == "stop"


def test_stop_string_inside_one_token(tokenizer, pipe):
    pipeline = pipe(stop_strings=["ll"])
    events = run(pipeline, encode(tokenizer, "Hello"))
    assert texts(events) == "He"
    assert pipeline.matched_stop == "ll"


def test_earliest_of_several_stop_strings_wins(tokenizer, pipe):
    pipeline = pipe(stop_strings=["there", "lo S"])
    events = run(pipeline, encode(tokenizer, "Hello STOP there"))
    assert texts(events) == "Hel"
    assert pipeline.matched_stop == "lo S"


def test_held_text_is_released_when_the_stop_string_does_not_complete(tokenizer, pipe):
    pipeline = pipe(stop_strings=["STOP"])
    held = []
    for token_id in encode(tokenizer, "Hello ST"):
        held.extend(pipeline.push(token_id))
    assert texts(held) == "Hello "
    assert texts(held + pipeline.close()) == "Hello ST"
    assert not pipeline.stopped
    assert pipeline.finish_reason("length") == "length"


def test_stop_string_matching_a_marker(tokenizer, pipe):
    pipeline = pipe(stop_strings=["<tool_call>"])
    events = run(pipeline, encode(tokenizer, 'Hi<tool_call>{"name": "a"}</tool_call>'))
    assert texts(events) == "Hi" and calls(events) == []
    assert pipeline.matched_stop == "<tool_call>"
    assert pipeline.finish_reason("stop") == "stop"


def test_eos_stops_the_turn(tokenizer, pipe, eos_id):
    pipeline = pipe()
    ids = [*encode(tokenizer, "Done"), eos_id, *encode(tokenizer, "more")]
    events = run(pipeline, ids)
    assert texts(events) == "Done"
    assert pipeline.stopped and pipeline.matched_stop is None
    assert pipeline.finish_reason("length") == "stop"


def test_special_tokens_are_skipped_unless_asked_for(tokenizer, eos_id, markers):
    start = tokenizer.token_to_id("<|im_start|>")
    ids = [start, *encode(tokenizer, "hi")]
    assert texts(run(TokenPipeline(tokenizer, markers), ids)) == "hi"
    kept = TokenPipeline(tokenizer, markers, skip_special_tokens=False)
    assert texts(run(kept, ids)) == "<|im_start|>hi"


def test_engine_reasons_pass_through(tokenizer, pipe):
    pipeline = pipe()
    run(pipeline, encode(tokenizer, "x"))
    assert pipeline.finish_reason("length") == "length"
    assert pipeline.finish_reason("cancelled") == "cancelled"
    assert pipeline.finish_reason("error") == "error"


def test_forced_call_on_a_tokenizer_without_marker_tokens_is_parsed(tokenizer, eos_id):
    plain = tokenizer_without_markers(tokenizer)
    body = '{"name": "f", "arguments": {"q": "x"}}'
    pipeline = TokenPipeline(plain, Markers.probe(plain), eos_ids=[eos_id], expect_tool_call=True)
    events = run(pipeline, [*encode(plain, f"<tool_call>\n{body}\n</tool_call>"), eos_id])
    [call] = events
    assert isinstance(call, ToolCallDelta) and json.loads(call.arguments) == {"q": "x"}
    assert pipeline.finish_reason("stop") == "tool_calls"
