"""InferenceEvents -> OpenAI output: stream chunks as SSE bytes, or one response object.

Chat: the first chunk carries ``role: "assistant"``; reasoning goes out as
``delta.reasoning_content``; a tool call as one ``delta.tool_calls`` entry with its
id, name and complete arguments; the finish chunk carries ``finish_reason`` (and the
matched stop string as ``stop_reason``, vLLM's extension, and cortex's ``timings``);
with ``include_usage`` a last chunk has ``choices: []`` and ``usage``; then
``data: [DONE]``. A generation that fails ends the stream with
``data: {"error": {...}}`` (OpenAI's envelope, which the openai SDK raises as
``APIError``) and ``[DONE]``.

Legacy completions are text only: the neuron builds their pipeline with
``Markers.none()``, so reasoning and tool-call markers stay in the text as the model
wrote them. Should such events reach the completion projectors anyway, they are
written back as text in the same form.

A "cancelled" finish (the client left, or the request was withdrawn) projects as
finish_reason "stop": nobody is usually there to read it.
"""

from __future__ import annotations

import json

from msgspec import UNSET

from cortex.common.errors import CortexError, openai_error_body
from cortex.common.openai import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChoiceDelta,
    ChunkChoice,
    Completion,
    CompletionChoice,
    FinishReason,
    FunctionCall,
    FunctionCallDelta,
    PromptTokensDetails,
    ResponseMessage,
    Timings,
    ToolCall,
    Usage,
)
from cortex.common.openai import ToolCallDelta as WireToolCallDelta
from cortex.common.sse import DONE, encode_json
from cortex.services.neuron.pipeline.events import (
    Finish,
    InferenceEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from cortex.services.neuron.pipeline.markers import THINK_CLOSE, THINK_OPEN, TOOL_CLOSE, TOOL_OPEN

__all__ = [
    "ChatAccumulator",
    "ChatStreamProjector",
    "CompletionAccumulator",
    "CompletionStreamProjector",
    "chat_completion",
    "completion",
    "error_event",
    "finish_reason",
    "timings",
    "usage",
]


def finish_reason(finish: Finish) -> FinishReason:
    """The OpenAI finish reason; a failed generation has none (its stream ends in an error)."""
    reason = finish.reason
    if reason == "cancelled" or reason == "error":
        return "stop"
    return reason


def usage(finish: Finish) -> Usage:
    return Usage(
        prompt_tokens=finish.prompt_tokens,
        completion_tokens=finish.completion_tokens,
        total_tokens=finish.prompt_tokens + finish.completion_tokens,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=finish.cached_tokens),
    )


def timings(finish: Finish) -> Timings:
    return Timings(
        prompt_tokens=finish.prompt_tokens,
        completion_tokens=finish.completion_tokens,
        ttft_ms=finish.ttft_ms or 0.0,
        prefill_tokens_per_s=finish.prefill_tokens_per_s or 0.0,
        decode_tokens_per_s=finish.decode_tokens_per_s or 0.0,
        total_ms=finish.total_ms,
        queue_ms=finish.queue_ms,
    )


def finish_error(finish: Finish) -> CortexError:
    return CortexError(
        finish.error_status or 500,
        finish.error or "generation failed",
        code="generation_failed",
    )


def error_event(error: CortexError | str) -> bytes:
    """The last bytes of a stream that failed: an OpenAI error envelope, then [DONE]."""
    if isinstance(error, str):
        error = CortexError(500, error, code="generation_failed")
    return b"data: " + openai_error_body(error) + b"\n\n" + DONE


# ---------------------------------------------------------------------- chat


class ChatStreamProjector:
    """Events of one chat completion -> ``chat.completion.chunk`` SSE bytes."""

    def __init__(
        self, model: str, completion_id: str, created: int, include_usage: bool = False
    ) -> None:
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self.started = False
        self.finished = False

    def start(self, prompt_tokens: int | None = None) -> bytes:
        """The opening chunk (``role: "assistant"``); sent by ``feed`` if not sent yet.

        ``prompt_tokens`` rides on it as ``timings.prompt_tokens``, so a client (or the
        gateway's Anthropic ``message_start``) knows the prompt size before any token.
        """
        if self.started:
            return b""
        self.started = True
        chunk = self._chunk(ChoiceDelta(role="assistant", content=""))
        if prompt_tokens is not None:
            chunk.timings = Timings(prompt_tokens=prompt_tokens)
        return encode_json(chunk)

    def feed(self, event: InferenceEvent) -> bytes:
        """SSE bytes for ``event`` (the Finish also writes usage and ``[DONE]``)."""
        if self.finished:
            return b""
        opening = self.start()
        if isinstance(event, Finish):
            self.finished = True
            if event.reason == "error":
                return opening + error_event(finish_error(event))
        return (
            opening
            + b"".join(encode_json(chunk) for chunk in self.chunks(event))
            + (DONE if self.finished else b"")
        )

    def error(self, error: CortexError | str) -> bytes:
        """End the stream with an error (e.g. the worker died)."""
        if self.finished:
            return b""
        self.finished = True
        return self.start() + error_event(error)

    def chunks(self, event: InferenceEvent) -> list[ChatCompletionChunk]:
        """The chunks for ``event`` (without the opening one)."""
        if isinstance(event, TextDelta):
            return [self._chunk(ChoiceDelta(content=event.text))] if event.text else []
        if isinstance(event, ReasoningDelta):
            return [self._chunk(ChoiceDelta(reasoning_content=event.text))] if event.text else []
        if isinstance(event, ToolCallDelta):
            call = WireToolCallDelta(
                index=event.index,
                id=event.id,
                type="function",
                function=FunctionCallDelta(name=event.name, arguments=event.arguments),
            )
            return [self._chunk(ChoiceDelta(tool_calls=[call]))]
        last = ChatCompletionChunk(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[
                ChunkChoice(
                    index=0,
                    delta=ChoiceDelta(),
                    finish_reason=finish_reason(event),
                    stop_reason=event.stop_sequence if event.stop_sequence else UNSET,
                )
            ],
            timings=timings(event),
        )
        if not self.include_usage:
            return [last]
        usage_chunk = ChatCompletionChunk(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[],
            usage=usage(event),
        )
        return [last, usage_chunk]

    def _chunk(self, delta: ChoiceDelta) -> ChatCompletionChunk:
        return ChatCompletionChunk(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[ChunkChoice(index=0, delta=delta)],
        )


class ChatAccumulator:
    """Events of one chat completion -> the non-stream ``ChatCompletion``."""

    def __init__(self, model: str, completion_id: str, created: int) -> None:
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self._text: list[str] = []
        self._reasoning: list[str] = []
        self._calls: list[ToolCall] = []
        self._finish: Finish | None = None

    def add(self, event: InferenceEvent) -> None:
        if isinstance(event, TextDelta):
            self._text.append(event.text)
        elif isinstance(event, ReasoningDelta):
            self._reasoning.append(event.text)
        elif isinstance(event, ToolCallDelta):
            function = FunctionCall(name=event.name, arguments=event.arguments)
            self._calls.append(ToolCall(id=event.id, function=function))
        else:
            self._finish = event

    def result(self) -> ChatCompletion:
        """The response; a ``CortexError`` if the generation failed or never finished."""
        finish = self._finish
        if finish is None:
            raise CortexError(502, "the generation ended without finishing", code="incomplete")
        if finish.reason == "error":
            raise finish_error(finish)
        text = "".join(self._text)
        content = None if self._calls and not text.strip() else text
        reasoning = "".join(self._reasoning)
        message = ResponseMessage(
            content=content,
            reasoning_content=reasoning if reasoning else UNSET,
            tool_calls=list(self._calls) if self._calls else UNSET,
        )
        choice = ChatChoice(
            index=0,
            message=message,
            finish_reason=finish_reason(finish),
            stop_reason=finish.stop_sequence if finish.stop_sequence else UNSET,
        )
        return ChatCompletion(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[choice],
            usage=usage(finish),
            timings=timings(finish),
        )


def chat_completion(
    events: list[InferenceEvent], *, model: str, completion_id: str, created: int
) -> ChatCompletion:
    accumulator = ChatAccumulator(model, completion_id, created)
    for event in events:
        accumulator.add(event)
    return accumulator.result()


# ---------------------------------------------------------------------- legacy completions


def _as_text(event: InferenceEvent) -> str:
    if isinstance(event, TextDelta):
        return event.text
    if isinstance(event, ReasoningDelta):
        return event.text
    if isinstance(event, ToolCallDelta):
        body = json.dumps({"name": event.name, "arguments": json.loads(event.arguments)})
        return f"{TOOL_OPEN}\n{body}\n{TOOL_CLOSE}"
    return ""


class _ReasoningAsText:
    """Puts ``<think>``/``</think>`` back around reasoning events."""

    def __init__(self) -> None:
        self.inside = False

    def text(self, event: InferenceEvent) -> str:
        prefix = ""
        if isinstance(event, ReasoningDelta) and not self.inside:
            self.inside, prefix = True, THINK_OPEN
        elif not isinstance(event, ReasoningDelta) and self.inside:
            self.inside, prefix = False, THINK_CLOSE
        return prefix + _as_text(event)


class CompletionStreamProjector:
    """Events of one legacy completion -> ``text_completion`` SSE bytes."""

    def __init__(
        self, model: str, completion_id: str, created: int, include_usage: bool = False
    ) -> None:
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self.include_usage = include_usage
        self.finished = False
        self._reasoning = _ReasoningAsText()

    def feed(self, event: InferenceEvent) -> bytes:
        if self.finished:
            return b""
        if isinstance(event, Finish):
            self.finished = True
            if event.reason == "error":
                return error_event(finish_error(event))
        return b"".join(encode_json(chunk) for chunk in self.chunks(event)) + (
            DONE if self.finished else b""
        )

    def error(self, error: CortexError | str) -> bytes:
        if self.finished:
            return b""
        self.finished = True
        return error_event(error)

    def chunks(self, event: InferenceEvent) -> list[Completion]:
        if not isinstance(event, Finish):
            text = self._reasoning.text(event)
            return [self._chunk(text, None)] if text else []
        tail = self._reasoning.text(event)  # closes an open <think>
        last = self._chunk(tail, finish_reason(event))
        last.timings = timings(event)
        if not self.include_usage:
            return [last]
        usage_chunk = Completion(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[],
            usage=usage(event),
        )
        return [last, usage_chunk]

    def _chunk(self, text: str, reason: FinishReason | None) -> Completion:
        return Completion(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[CompletionChoice(index=0, text=text, finish_reason=reason)],
        )


class CompletionAccumulator:
    """Events of one legacy completion -> the non-stream ``Completion``."""

    def __init__(self, model: str, completion_id: str, created: int) -> None:
        self.model = model
        self.completion_id = completion_id
        self.created = created
        self._parts: list[str] = []
        self._reasoning = _ReasoningAsText()
        self._finish: Finish | None = None

    def add(self, event: InferenceEvent) -> None:
        self._parts.append(self._reasoning.text(event))
        if isinstance(event, Finish):
            self._finish = event

    def result(self) -> Completion:
        finish = self._finish
        if finish is None:
            raise CortexError(502, "the generation ended without finishing", code="incomplete")
        if finish.reason == "error":
            raise finish_error(finish)
        choice = CompletionChoice(
            index=0, text="".join(self._parts), finish_reason=finish_reason(finish)
        )
        return Completion(
            id=self.completion_id,
            created=self.created,
            model=self.model,
            choices=[choice],
            usage=usage(finish),
            timings=timings(finish),
        )


def completion(
    events: list[InferenceEvent], *, model: str, completion_id: str, created: int
) -> Completion:
    accumulator = CompletionAccumulator(model, completion_id, created)
    for event in events:
        accumulator.add(event)
    return accumulator.result()
