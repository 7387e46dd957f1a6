"""An OpenAI chat completion stream re-told as a Responses stream.

One :class:`ResponseStream` per stream; all state lives on the instance. Every event
carries ``sequence_number`` (0, 1, 2, ...) and goes out as ``event: <type>`` with its
JSON ``data``, in OpenAI's order:

``response.created`` and ``response.in_progress`` (with the neuron's opening chunk);
then the output items, each opened (``response.output_item.added``), fed and closed
(``response.output_item.done``) before the next opens, ``output_index`` counting from
0:

- reasoning: ``reasoning_summary_part.added``, ``reasoning_summary_text.delta``...,
  ``reasoning_summary_text.done``, ``reasoning_summary_part.done``;
- message: ``content_part.added``, ``output_text.delta``..., ``output_text.done``,
  ``content_part.done``;
- function call: ``function_call_arguments.delta``..., ``function_call_arguments.done``;

and last ``response.completed`` or ``response.incomplete`` with the whole Response and
its usage (which waits for the neuron's usage chunk after its ``finish_reason``, or for
``[DONE]`` / :meth:`ResponseStream.finish`).

Whitespace-only text that would open a message of its own is held as in the Anthropic
translation (``anthropic/stream.py``). An upstream that ends without a
``finish_reason``, or sends an error, gets an ``error`` event, then, once
``response.created`` went out, ``response.failed``: never a hang or a fake completion.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from cortex.common import openai as o
from cortex.common import responses as r
from cortex.common.errors import CortexError
from cortex.common.sse import SSEDecoder, comment, encode_json
from cortex.services.gateway.chat_stream import (
    UpstreamCall,
    interleaved_calls,
    not_a_chunk,
    track_call,
)

from .response import (
    Turn,
    call_item,
    item_status,
    message_item,
    new_id,
    reasoning_item,
    status_for,
    usage_for,
)

_chunk_decoder = msgspec.json.Decoder(r.ChatCompletionChunk)


@dataclass(slots=True)
class _Item:
    index: int
    id: str
    kind: str  # "reasoning" | "message" | "call"
    text: list[str] = field(default_factory=list)
    call: UpstreamCall | None = None


class ResponseStream:
    """Feed it the neuron's raw SSE bytes; it returns the Responses SSE bytes to send.

    ``response`` holds the final Response once ``response.completed`` /
    ``response.incomplete`` has been produced (the caller stores it before sending).
    """

    def __init__(self, turn: Turn) -> None:
        self.turn = turn
        self.response: r.Response | None = None
        self._decoder = SSEDecoder()
        self._sequence = 0
        self._started = False
        self._done = False
        self._open: _Item | None = None
        self._output: list[r.OutputItem] = []
        self._held_whitespace = ""
        self._calls: dict[int, UpstreamCall] = {}
        self._content_chunks = 0
        self._finish_reason: str | None = None
        self._usage: r.ChatUsage | None = None

    # ------------------------------------------------------------------ public

    @property
    def done(self) -> bool:
        return self._done

    def ping(self) -> bytes:
        """A keepalive: an SSE comment, which every Responses client skips."""
        return b"" if self._done else comment("ping")

    def start(self) -> bytes:
        """``response.created`` and ``response.in_progress`` (once)."""
        if self._started or self._done:
            return b""
        self._started = True
        head = self.turn.response("in_progress", [])
        return self._event(r.ResponseCreated(response=head)) + self._event(
            r.ResponseInProgress(response=head)
        )

    def feed_bytes(self, data: bytes) -> bytes:
        """Translate raw upstream SSE bytes, split anywhere."""
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
            self._on_chunk(chunk, out)
        return b"".join(out)

    def finish(self) -> bytes:
        """Call when the upstream stream has ended. Idempotent."""
        return self._complete()

    def error(self, error: CortexError) -> bytes:
        """An ``error`` event (and ``response.failed`` after the head); nothing follows."""
        if self._done:
            return b""
        self._done = True
        out = self._event(r.ErrorEvent(message=error.message, code=error.code, param=error.param))
        if self._started:
            failed = self.turn.response(
                "failed",
                self._output,
                error=r.ResponseError(code=_failure_code(error.status), message=error.message),
            )
            out += self._event(r.ResponseFailed(response=failed))
        return out

    # ------------------------------------------------------------------ chunks

    def _on_chunk(self, chunk: r.ChatCompletionChunk, out: list[bytes]) -> None:
        if not self._started:
            out.append(self.start())
        usage = chunk.usage if isinstance(chunk.usage, r.ChatUsage) else None
        if usage is not None:
            self._usage = usage
        if self._finish_reason is None:
            for choice in chunk.choices:
                if choice.index == 0:
                    self._on_choice(choice, out)
                if self._done:
                    return
        if self._finish_reason is not None and usage is not None:
            out.append(self._complete())

    def _on_choice(self, choice: o.ChunkChoice, out: list[bytes]) -> None:
        delta = choice.delta
        if delta.reasoning_content:
            self._reasoning(delta.reasoning_content, out)
        if delta.content:
            self._text(delta.content, out)
        for call in delta.tool_calls or ():
            self._tool_call(call, out)
        if delta.reasoning_content or delta.content or delta.tool_calls:
            self._content_chunks += 1
        if choice.finish_reason is not None:
            self._finish_reason = choice.finish_reason
            self._close(out)

    def _reasoning(self, text: str, out: list[bytes]) -> None:
        item = self._open
        if item is None or item.kind != "reasoning":
            item = self._begin("reasoning", out)
        item.text.append(text)
        out.append(
            self._event(
                r.ReasoningSummaryTextDelta(
                    item_id=item.id, output_index=item.index, summary_index=0, delta=text
                )
            )
        )

    def _text(self, text: str, out: list[bytes]) -> None:
        item = self._open
        if item is None or item.kind != "message":
            if text.isspace():
                self._held_whitespace += text
                return
            text, self._held_whitespace = self._held_whitespace + text, ""
            self._begin("message", out)
        self._text_into_open(text, out)

    def _tool_call(self, delta: o.ToolCallDelta, out: list[bytes]) -> None:
        call = track_call(self._calls, delta)
        arguments = delta.function.arguments if delta.function is not None else None
        if call.opened is None:
            if arguments:
                call.pending.append(arguments)
            if call.name is None:
                return  # the name opens the item: wait for it
            item = self._begin("call", out, call)
            arguments = "".join(call.pending)
            call.pending.clear()
        else:
            item = self._open  # type: ignore[assignment]
            if item is None or item.call is not call:
                if arguments:
                    out.append(self.error(_INTERLEAVED))
                return
        if arguments:
            item.text.append(arguments)
            out.append(
                self._event(
                    r.FunctionCallArgumentsDelta(
                        item_id=item.id, output_index=item.index, delta=arguments
                    )
                )
            )

    # ------------------------------------------------------------------ items

    def _begin(self, kind: str, out: list[bytes], call: UpstreamCall | None = None) -> _Item:
        self._close(out)
        index = len(self._output)
        prefix = {"reasoning": "rs", "message": "msg", "call": "fc"}[kind]
        item = _Item(index=index, id=new_id(prefix), kind=kind, call=call)
        self._open = item
        added: r.OutputItem
        if kind == "reasoning":
            added = reasoning_item(item.id, "")
        elif kind == "message":
            added = r.Message(id=item.id, role="assistant", status="in_progress", content=[])
        else:
            assert call is not None and call.name is not None
            call.id = call.id or new_id("call")
            call.opened = index
            added = self._call_item(item, "in_progress")
        out.append(self._event(r.OutputItemAdded(output_index=index, item=added)))
        if kind == "reasoning":
            out.append(
                self._event(
                    r.ReasoningSummaryPartAdded(
                        item_id=item.id,
                        output_index=index,
                        summary_index=0,
                        part=r.SummaryText(""),
                    )
                )
            )
        elif kind == "message":
            out.append(
                self._event(
                    r.ContentPartAdded(
                        item_id=item.id,
                        output_index=index,
                        content_index=0,
                        part=r.OutputText(text=""),
                    )
                )
            )
        # The list holds a placeholder until the item is done (keeps indices stable).
        self._output.append(added)
        return item

    def _call_item(self, item: _Item, status: r.ItemStatus) -> r.FunctionCall:
        call = item.call
        assert call is not None and call.id is not None and call.name is not None
        return call_item(
            item.id, call.id, call.name, "".join(item.text), status, self.turn.functions
        )

    def _close(self, out: list[bytes]) -> None:
        item = self._open
        if item is None:
            return
        self._open = None
        status = item_status(status_for(self._finish_reason)[0])
        text = "".join(item.text)
        at: dict[str, Any] = {"item_id": item.id, "output_index": item.index}
        done: r.OutputItem
        if item.kind == "reasoning":
            summary = r.SummaryText(text)
            out.append(self._event(r.ReasoningSummaryTextDone(**at, summary_index=0, text=text)))
            out.append(self._event(r.ReasoningSummaryPartDone(**at, summary_index=0, part=summary)))
            done = reasoning_item(item.id, text)
        elif item.kind == "message":
            out.append(self._event(r.OutputTextDone(**at, content_index=0, text=text)))
            part = r.OutputText(text=text)
            out.append(self._event(r.ContentPartDone(**at, content_index=0, part=part)))
            done = message_item(item.id, text, status)
        else:
            done = self._call_item(item, status)
            out.append(
                self._event(
                    r.FunctionCallArgumentsDone(**at, arguments=done.arguments, name=done.name)
                )
            )
        self._output[item.index] = done
        out.append(self._event(r.OutputItemDone(output_index=item.index, item=done)))

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
                    code="upstream_incomplete",
                )
            )
        out: list[bytes] = [self.start()]
        self._close(out)
        if self._held_whitespace and not self._output:
            self._begin("message", out)
            self._text_into_open(self._held_whitespace, out)
            self._close(out)
        self._held_whitespace = ""
        status, incomplete = status_for(self._finish_reason)
        usage = usage_for(self._usage, output_tokens=self._content_chunks)
        self.response = self.turn.response(status, self._output, usage, incomplete=incomplete)
        final = r.ResponseCompleted if status == "completed" else r.ResponseIncomplete
        out.append(self._event(final(response=self.response)))
        self._done = True
        return b"".join(out)

    def _text_into_open(self, text: str, out: list[bytes]) -> None:
        item = self._open
        assert item is not None
        item.text.append(text)
        out.append(
            self._event(
                r.OutputTextDelta(
                    item_id=item.id, output_index=item.index, content_index=0, delta=text
                )
            )
        )

    def _event(self, event: r.StreamEvent) -> bytes:
        event.sequence_number = self._sequence
        self._sequence += 1
        return encode_json(event, event=r.event_name(event))


_INTERLEAVED = interleaved_calls("a Responses")


def _failure_code(status: int) -> str:
    """``response.error.code``: one of OpenAI's fixed values (the ``error`` event before
    it carries cortex's own code)."""
    if status == 429:
        return "rate_limit_exceeded"
    return "invalid_prompt" if 400 <= status < 500 else "server_error"
