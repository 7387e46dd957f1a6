"""The one internal stream of a generation: text, reasoning, tool calls, then a finish.

Tagged msgspec Structs (``kind``), so a list of them crosses the worker pipe as is.
"""

from __future__ import annotations

from typing import Literal

import msgspec

FinishKind = Literal["stop", "length", "tool_calls", "cancelled", "error"]


class TextDelta(msgspec.Struct, tag="text", tag_field="kind"):
    text: str


class ReasoningDelta(msgspec.Struct, tag="reasoning", tag_field="kind"):
    text: str


class ToolCallDelta(msgspec.Struct, tag="tool_call", tag_field="kind"):
    """One complete tool call; ``arguments`` is a JSON document (a string)."""

    index: int
    id: str
    name: str
    arguments: str


class Finish(msgspec.Struct, tag="finish", tag_field="kind", kw_only=True):
    """The end of a generation, with usage and timings (milliseconds, tokens per second).

    ``stop_sequence`` is the stop string that ended the turn, if one did; ``error`` the
    message when ``reason`` is "error" (``error_status`` the HTTP status it maps to).
    """

    reason: FinishKind
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    queue_ms: float = 0.0
    ttft_ms: float | None = None
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None
    total_ms: float = 0.0
    stop_sequence: str | None = None
    error: str | None = None
    error_status: int = 500


InferenceEvent = TextDelta | ReasoningDelta | ToolCallDelta | Finish

# For the pipe: msgspec.msgpack.encode(events) / EVENTS_DECODER.decode(data).
EVENTS_DECODER = msgspec.msgpack.Decoder(list[InferenceEvent])


def coalesce(events: list[InferenceEvent]) -> list[InferenceEvent]:
    """Merge neighbouring deltas of the same kind (fewer chunks, same text)."""
    merged: list[InferenceEvent] = []
    for event in events:
        last = merged[-1] if merged else None
        if isinstance(event, TextDelta) and isinstance(last, TextDelta):
            merged[-1] = TextDelta(last.text + event.text)
        elif isinstance(event, ReasoningDelta) and isinstance(last, ReasoningDelta):
            merged[-1] = ReasoningDelta(last.text + event.text)
        else:
            merged.append(event)
    return merged
