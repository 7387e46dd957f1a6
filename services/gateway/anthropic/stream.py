"""An OpenAI chat completion stream re-told as an Anthropic Messages stream.

One :class:`StreamTranslator` per stream; all state lives on the instance. The event
sequence is Anthropic's:

``message_start`` first; then content blocks, each opened (``content_block_start``),
fed (``content_block_delta``) and closed (``content_block_stop``) before the next opens,
indices counting from 0; then ``message_delta`` (stop_reason, stop_sequence, usage) and
``message_stop``. Within one upstream chunk, reasoning goes first, then text, then tool
calls, so a chunk that carries several is split in Anthropic's block order, and a
chunk carrying content and ``finish_reason`` together is split into the content, then
the finish. A change of kind closes the open block: a thinking block gets a
``signature_delta`` before it closes; tool argument pieces for the open call continue
its block as ``input_json_delta`` (a call that streamed no arguments gets ``{}``).

Whitespace-only text that would open a block of its own (the newline a model writes
between ``</think>`` and its answer, or between two tool calls) is held and prepended
to the next text; it is dropped if no text follows and other blocks were sent.

The ``finish_reason`` chunk closes the open block; ``message_delta`` waits for the
usage chunk that follows it (the request asks for ``include_usage``), or for
``[DONE]`` / :meth:`StreamTranslator.finish`. An upstream that ends without a
``finish_reason`` (it died) gets an ``error`` event, never a hang or a fake
``end_turn``; so does an upstream error event (``data: {"error": ...}``).
"""

from __future__ import annotations

from dataclasses import dataclass

import msgspec

from cortex.common import anthropic as a
from cortex.common import openai as o
from cortex.common.errors import CortexError, anthropic_error
from cortex.common.sse import SSEDecoder, comment, encode_json
from cortex.services.gateway.chat_stream import (
    UpstreamCall,
    interleaved_calls,
    not_a_chunk,
    track_call,
    unreadable_chunk,
)

from .errors import error_from_openai
from .names import ToolNameMap
from .request import tool_names
from .response import THINKING_SIGNATURE, new_message_id, new_tool_use_id, stop_reason_for

_chunk_decoder = msgspec.json.Decoder(o.ChatCompletionChunk)


def encode_event(event: a.StreamEvent) -> bytes:
    """One Anthropic SSE event: ``event: <type>`` then its JSON ``data``."""
    return encode_json(event, event=a.event_name(event))


def error_event(error: CortexError) -> bytes:
    """An Anthropic ``error`` stream event for ``error`` (the SDKs raise it)."""
    return encode_json(anthropic_error(error), event="error")


@dataclass(slots=True)
class _Block:
    index: int
    kind: str  # "thinking" | "text" | "tool_use"
    call: UpstreamCall | None = None


class StreamTranslator:
    """Feed it upstream OpenAI chunks (decoded, as dicts, or raw SSE bytes); it returns
    the Anthropic SSE bytes to send (possibly ``b""``).

    ``request`` (the client's Messages request) supplies the tool names to restore and
    the stop sequences to recognise. ``model`` is the name reported in ``message_start``.
    ``input_tokens`` seeds ``message_start.usage`` when the caller knows the prompt size;
    otherwise the first chunk's ``usage`` or ``timings.prompt_tokens`` is used when the
    upstream sends one, else 0 (the final ``message_delta`` always carries the count).
    """

    def __init__(
        self,
        request: a.MessagesBase | None = None,
        *,
        model: str,
        input_tokens: int = 0,
        message_id: str | None = None,
    ) -> None:
        self.model = model
        self.message_id = message_id or new_message_id()
        self._names = tool_names(request) if request is not None else ToolNameMap()
        self._stops: tuple[str, ...] = tuple(getattr(request, "stop_sequences", None) or ())
        # Anthropic sends thinking blocks only to a request that asked for thinking.
        self._show_thinking = request is None or request.wants_thinking
        self._input_tokens = input_tokens
        self._decoder = SSEDecoder()
        self._started = False
        self._done = False
        self._open: _Block | None = None
        self._next_index = 0
        self._held_whitespace = ""
        self._calls: dict[int, UpstreamCall] = {}
        self._has_tool_use = False
        self._content_chunks = 0
        self._finish_reason: str | None = None
        self._matched_stop: str | int | None = None
        self._usage: o.Usage | None = None
        self.stop_reason: a.StopReason | None = None

    # ------------------------------------------------------------------ public

    @property
    def started(self) -> bool:
        """Whether ``message_start`` has been sent."""
        return self._started

    @property
    def done(self) -> bool:
        """Whether the stream is over (``message_stop`` or ``error`` sent)."""
        return self._done

    @property
    def usage(self) -> o.Usage | None:
        """The upstream's usage, once its usage chunk arrived."""
        return self._usage

    def start(self) -> bytes:
        """``message_start`` (once; later calls return ``b""``)."""
        if self._started or self._done:
            return b""
        self._started = True
        message = a.Message(
            id=self.message_id,
            model=self.model,
            content=[],
            usage=a.Usage(input_tokens=self._input_tokens, output_tokens=0),
        )
        return encode_event(a.MessageStart(message=message))

    def ping(self) -> bytes:
        """A keepalive: Anthropic's ``ping`` event, or an SSE comment before
        ``message_start`` (which must be the first event)."""
        if self._done:
            return b""
        if not self._started:
            return comment("ping")
        return encode_event(a.Ping())

    def feed(self, chunk: o.ChatCompletionChunk | dict) -> bytes:
        """Translate one upstream chunk (a decoded chunk, or its JSON as a dict)."""
        if self._done:
            return b""
        if isinstance(chunk, dict):
            if "error" in chunk:
                return self.error(error_from_openai(None, chunk))
            try:
                chunk = msgspec.convert(chunk, o.ChatCompletionChunk)
            except msgspec.ValidationError as exc:
                return self.error(unreadable_chunk(str(exc)))
        return b"".join(self._on_chunk(chunk))

    def feed_bytes(self, data: bytes) -> bytes:
        """Translate raw upstream SSE bytes, split anywhere; handles ``[DONE]`` and
        upstream error events."""
        out: list[bytes] = []
        for sse in self._decoder.feed(data):
            if self._done:
                break
            payload = sse.data.strip()
            if payload == "[DONE]":
                out.append(self._complete())
                continue
            try:
                chunk = _chunk_decoder.decode(payload)
            except (msgspec.ValidationError, msgspec.DecodeError) as exc:
                out.append(self.error(not_a_chunk(payload, exc)))
                continue
            out.extend(self._on_chunk(chunk))
        return b"".join(out)

    def finish(self) -> bytes:
        """Call when the upstream stream has ended: completes the message, or sends an
        ``error`` event if the upstream never finished it. Idempotent."""
        return self._complete()

    def error(self, error: CortexError) -> bytes:
        """An ``error`` event ending the stream (no more events follow)."""
        if self._done:
            return b""
        self._done = True
        return error_event(error)

    # ------------------------------------------------------------------ chunks

    def _on_chunk(self, chunk: o.ChatCompletionChunk) -> list[bytes]:
        out: list[bytes] = []
        usage = chunk.usage if isinstance(chunk.usage, o.Usage) else None
        if not self._started:
            if not self._input_tokens:
                self._input_tokens = _prompt_tokens(chunk, usage)
            out.append(self.start())
        if usage is not None:
            self._usage = usage
        if self._finish_reason is None:
            for choice in chunk.choices:
                if choice.index == 0:
                    self._on_choice(choice, out)
                if self._done:
                    return out
        if self._finish_reason is not None and usage is not None:
            out.append(self._complete())
        return out

    def _on_choice(self, choice: o.ChunkChoice, out: list[bytes]) -> None:
        delta = choice.delta
        if delta.reasoning_content and self._show_thinking:
            self._thinking(delta.reasoning_content, out)
        if delta.content:
            self._text(delta.content, out)
        for call in delta.tool_calls or ():
            self._tool_call(call, out)
            if self._done:
                return
        if delta.reasoning_content or delta.content or delta.tool_calls:
            self._content_chunks += 1
        if choice.finish_reason is not None:
            self._finish_reason = choice.finish_reason
            if choice.stop_reason is not msgspec.UNSET:
                self._matched_stop = choice.stop_reason
            self._close(out)

    def _thinking(self, text: str, out: list[bytes]) -> None:
        if self._open is None or self._open.kind != "thinking":
            self._begin("thinking", out)
        out.append(self._delta(a.ThinkingDelta(text)))

    def _text(self, text: str, out: list[bytes]) -> None:
        if self._open is not None and self._open.kind == "text":
            out.append(self._delta(a.TextDelta(text)))
            return
        if text.isspace():
            self._held_whitespace += text
            return
        text, self._held_whitespace = self._held_whitespace + text, ""
        self._begin("text", out)
        out.append(self._delta(a.TextDelta(text)))

    def _tool_call(self, delta: o.ToolCallDelta, out: list[bytes]) -> None:
        call = track_call(self._calls, delta)
        arguments = delta.function.arguments if delta.function is not None else None
        if call.opened is None:
            if arguments:
                call.pending.append(arguments)
            if call.name is None:
                return  # the name opens the block: wait for it
            self._begin("tool_use", out, call)
            arguments = "".join(call.pending)
            call.pending.clear()
        elif self._open is None or self._open.call is not call:
            if arguments:
                out.append(self.error(_INTERLEAVED))
            return
        if arguments:
            call.sent_arguments = True
            out.append(self._delta(a.InputJSONDelta(arguments)))

    # ------------------------------------------------------------------ blocks

    def _begin(self, kind: str, out: list[bytes], call: UpstreamCall | None = None) -> None:
        self._close(out)
        index = self._next_index
        self._next_index += 1
        block: a.ResponseBlock
        if kind == "thinking":
            block = a.ThinkingBlock(thinking="", signature="")
        elif kind == "text":
            block = a.TextBlock(text="")
        else:
            assert call is not None and call.name is not None
            call.id = call.id or new_tool_use_id()
            call.opened = index
            self._has_tool_use = True
            block = a.ToolUseBlock(id=call.id, name=self._names.to_anthropic(call.name), input={})
        self._open = _Block(index, kind, call)
        out.append(encode_event(a.ContentBlockStart(index=index, content_block=block)))

    def _delta(self, delta: a.BlockDelta) -> bytes:
        assert self._open is not None
        return encode_event(a.ContentBlockDelta(index=self._open.index, delta=delta))

    def _close(self, out: list[bytes]) -> None:
        block = self._open
        if block is None:
            return
        if block.kind == "thinking":
            out.append(self._delta(a.SignatureDelta(THINKING_SIGNATURE)))
        elif block.call is not None and not block.call.sent_arguments:
            # Clients build the input from the deltas alone (Claude Code ignores the
            # start's input): a call that streamed no arguments gets an empty object.
            out.append(self._delta(a.InputJSONDelta("{}")))
        out.append(encode_event(a.ContentBlockStop(index=block.index)))
        self._open = None

    # ------------------------------------------------------------------ end

    def _complete(self) -> bytes:
        if self._done:
            return b""
        if self._finish_reason is None:
            return self.error(
                CortexError(
                    502,
                    "The upstream model server ended the stream before the response was "
                    "complete; retry the request.",
                )
            )
        out: list[bytes] = [self.start()]
        self._close(out)
        if self._held_whitespace and self._next_index == 0:
            self._begin("text", out)
            out.append(self._delta(a.TextDelta(self._held_whitespace)))
            self._close(out)
        self._held_whitespace = ""
        self.stop_reason, stop_sequence = stop_reason_for(
            self._finish_reason,
            has_tool_use=self._has_tool_use,
            matched_stop=self._matched_stop,
            stop_sequences=self._stops,
        )
        usage = self._usage
        delta_usage = a.MessageDeltaUsage(
            # Without a usage chunk, count content chunks: one token each from a neuron.
            output_tokens=usage.completion_tokens if usage else self._content_chunks,
            input_tokens=(
                usage.prompt_tokens - usage.cached_tokens if usage else (self._input_tokens or None)
            ),
            cache_creation_input_tokens=0,
            cache_read_input_tokens=usage.cached_tokens if usage else 0,
        )
        out.append(
            encode_event(
                a.MessageDelta(
                    delta=a.MessageDeltaBody(
                        stop_reason=self.stop_reason, stop_sequence=stop_sequence
                    ),
                    usage=delta_usage,
                )
            )
        )
        out.append(encode_event(a.MessageStop()))
        self._done = True
        return b"".join(out)


_INTERLEAVED = interleaved_calls("an Anthropic")


def _prompt_tokens(chunk: o.ChatCompletionChunk, usage: o.Usage | None) -> int:
    if usage is not None:
        return usage.prompt_tokens
    if isinstance(chunk.timings, o.Timings):
        return chunk.timings.prompt_tokens
    return 0
