"""Token ids -> InferenceEvents: UTF-8-safe decoding, stop strings, marker routing.

``engine ids -> DecodeStream -> StopMatcher -> router -> events``. The router is a
small state machine driven by marker token ids (see ``markers``): ``<think>`` opens
reasoning, ``<tool_call>`` opens a call body that becomes a ``ToolCallDelta`` when it
parses and plain text (markers included) when it does not.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from tokenizers.decoders import DecodeStream

from cortex.services.neuron.pipeline.events import (
    InferenceEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    coalesce,
)
from cortex.services.neuron.pipeline.markers import TOOL_CLOSE, TOOL_OPEN, Markers
from cortex.services.neuron.pipeline.stops import Piece, StopMatcher
from cortex.services.neuron.pipeline.toolcalls import new_call_id, parse_tool_call

_CONTENT, _REASONING, _TOOL = "content", "reasoning", "tool"
_TEXT_CALL = re.compile(re.escape(TOOL_OPEN) + r"(.*?)" + re.escape(TOOL_CLOSE), re.DOTALL)


class TokenPipeline:
    """Feed generated token ids one at a time; get events back.

    ``push`` never returns a Finish: the caller builds it, with ``finish_reason``.
    ``stopped`` turns True when a stop string matched or an EOS id arrived; the engine
    should then stop generating. Call ``close`` once at the end to flush held text.

    ``start_in_reasoning``: the prompt already opened ``<think>`` (some templates do).
    ``expect_tool_call``: the output is a forced tool call; on a tokenizer without
    tool-call marker tokens, its text is parsed at ``close`` instead of streamed.
    """

    def __init__(
        self,
        tokenizer: Any,
        markers: Markers,
        *,
        stop_strings: Iterable[str] = (),
        skip_special_tokens: bool = True,
        eos_ids: Iterable[int] = (),
        start_in_reasoning: bool = False,
        expect_tool_call: bool = False,
    ) -> None:
        self._tokenizer = tokenizer
        self._stream = DecodeStream(skip_special_tokens=skip_special_tokens)
        self._eos_ids = frozenset(eos_ids)
        self._stops = StopMatcher(list(stop_strings))
        self._think = (markers.think_open, markers.think_close) if markers.reasoning else None
        self._tool = (markers.tool_open, markers.tool_close) if markers.tool_calls else None
        self._marker_text = {
            token_id: text
            for token_id in (*(self._think or ()), *(self._tool or ()))
            if (text := markers.text_of(token_id)) is not None
        }
        self._state = _REASONING if start_in_reasoning and self._think else _CONTENT
        self._strip_leading = self._state == _REASONING
        self._tool_body: list[str] = []
        self._capture_text = expect_tool_call and self._tool is None
        self._captured: list[str] = []
        self._calls = 0
        self._closed = False
        self.stopped = False

    @property
    def matched_stop(self) -> str | None:
        """The stop string that ended the turn, if one did."""
        return self._stops.matched

    @property
    def tool_calls(self) -> int:
        return self._calls

    def push(self, token_id: int) -> list[InferenceEvent]:
        if self.stopped or self._closed:
            return []
        if token_id in self._eos_ids:
            self.stopped = True
            return []
        try:
            chunk = self._stream.step(self._tokenizer, token_id) or ""
        except Exception:  # an id the tokenizer does not know: no text, never a crash
            chunk = ""
        marker = self._marker_text.get(token_id)
        if marker is not None:
            # Routed by id: a marker flagged special decodes to nothing (skipped).
            pieces = self._marker_pieces(token_id, marker, chunk)
        elif chunk:
            pieces = [Piece(chunk)]
        else:
            return []
        released: list[Piece] = []
        for piece in pieces:
            released.extend(self._stops.feed(piece))
        if self._stops.matched is not None:
            self.stopped = True
        return coalesce(self._route(released))

    def close(self) -> list[InferenceEvent]:
        """Flush held text, end an unterminated tool call; call once, at the end."""
        if self._closed:
            return []
        self._closed = True
        events = self._route(self._stops.flush())
        if self._state == _TOOL:
            events.extend(self._end_tool_call(terminated=False))
        if self._capture_text:
            events.extend(self._parse_captured())
        return coalesce(events)

    def finish_reason(self, engine_reason: str) -> str:
        """The OpenAI finish reason, given the engine's ("stop", "length", ...)."""
        if engine_reason in ("cancelled", "error"):
            return engine_reason
        natural_end = self.stopped or engine_reason == "stop"
        if self._calls and natural_end:
            return "tool_calls"
        if self.stopped:
            return "stop"
        return engine_reason

    # ------------------------------------------------------------------ internals

    @staticmethod
    def _marker_pieces(token_id: int, marker: str, chunk: str) -> list[Piece]:
        # ``chunk`` may also carry bytes of an earlier, incomplete character.
        lead = chunk[: -len(marker)] if chunk.endswith(marker) else chunk
        return [Piece(lead), Piece(marker, token_id)] if lead else [Piece(marker, token_id)]

    def _route(self, pieces: list[Piece]) -> list[InferenceEvent]:
        events: list[InferenceEvent] = []
        for piece in pieces:
            if piece.marker is None:
                events.extend(self._text(piece.text))
            else:
                events.extend(self._marker(piece.marker, piece.text))
        return events

    def _text(self, text: str) -> list[InferenceEvent]:
        if self._state == _TOOL:
            self._tool_body.append(text)
            return []
        if self._strip_leading:
            text = text.lstrip()
            if not text:
                return []
            self._strip_leading = False
        if self._state == _REASONING:
            return [ReasoningDelta(text)]
        if self._capture_text:
            self._captured.append(text)
            return []
        return [TextDelta(text)]

    def _marker(self, token_id: int, text: str) -> list[InferenceEvent]:
        think_open, think_close = self._think or (None, None)
        tool_open, tool_close = self._tool or (None, None)
        if self._state == _TOOL:
            if token_id == tool_close:
                return self._end_tool_call(terminated=True)
            self._tool_body.append(text)
            return []
        if self._state == _REASONING:
            if token_id == think_close:
                self._state, self._strip_leading = _CONTENT, True
                return []
            return self._text(text)  # a model may think about a <tool_call>
        if token_id == think_open:
            self._state, self._strip_leading = _REASONING, True
            return []
        if token_id == tool_open:
            self._state, self._tool_body = _TOOL, []
            return []
        return self._text(text)

    def _end_tool_call(self, *, terminated: bool) -> list[InferenceEvent]:
        body = "".join(self._tool_body)
        self._state, self._tool_body = _CONTENT, []
        parsed = parse_tool_call(body)
        if parsed is None:
            raw = TOOL_OPEN + body + (TOOL_CLOSE if terminated else "")
            return [TextDelta(raw)]
        self._strip_leading = True
        return [self._call(*parsed)]

    def _call(self, name: str, arguments: str) -> ToolCallDelta:
        call = ToolCallDelta(index=self._calls, id=new_call_id(), name=name, arguments=arguments)
        self._calls += 1
        return call

    def _parse_captured(self) -> list[InferenceEvent]:
        text = "".join(self._captured)
        events: list[InferenceEvent] = []
        position = 0
        for match in _TEXT_CALL.finditer(text):
            parsed = parse_tool_call(match.group(1))
            if parsed is None:
                continue
            if text[position : match.start()].strip():
                events.append(TextDelta(text[position : match.start()]))
            events.append(self._call(*parsed))
            position = match.end()
        if text[position:].strip() or (not events and text):
            events.append(TextDelta(text[position:]))
        return events
