"""OpenAI wire formats: chat completions, legacy completions, models, streaming chunks.

Requests tolerate unknown fields (as api.openai.com does); wrong types are rejected
with a message naming the field. In responses, fields OpenAI always sends (``object``,
``finish_reason``, ``content``) are always encoded; optional ones and cortex's
extensions are ``UNSET`` (left out) until given.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]
FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]


# --------------------------------------------------------------------------- request


class ImageURL(msgspec.Struct, omit_defaults=True):
    url: str
    detail: str | None = None


class TextPart(msgspec.Struct, tag="text", tag_field="type"):
    text: str


class ImagePart(msgspec.Struct, tag="image_url", tag_field="type"):
    image_url: ImageURL


class InputAudioPart(msgspec.Struct, tag="input_audio", tag_field="type"):
    input_audio: dict[str, Any]


class FilePart(msgspec.Struct, tag="file", tag_field="type"):
    file: dict[str, Any]


class RefusalPart(msgspec.Struct, tag="refusal", tag_field="type"):
    refusal: str


ContentPart = TextPart | ImagePart | InputAudioPart | FilePart | RefusalPart


class FunctionCall(msgspec.Struct):
    name: str
    arguments: str  # a JSON document, as a string (OpenAI's convention)


class ToolCall(msgspec.Struct):
    id: str
    function: FunctionCall
    type: Literal["function"] = "function"


class ChatMessage(msgspec.Struct, omit_defaults=True):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCall] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None  # accepted back from clients that echo it

    def text(self) -> str:
        """The message's text: a string as is, text parts joined, other parts dropped."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class FunctionDefinition(msgspec.Struct, omit_defaults=True):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class Tool(msgspec.Struct):
    function: FunctionDefinition
    type: Literal["function"] = "function"


class NamedFunction(msgspec.Struct):
    name: str


class NamedToolChoice(msgspec.Struct):
    function: NamedFunction
    type: Literal["function"] = "function"


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice


class StreamOptions(msgspec.Struct, omit_defaults=True):
    include_usage: bool = False


class SamplingFields(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Sampling parameters common to chat and legacy completions.

    ``None`` means "not given": the neuron maps each explicitly to the engine, with
    OpenAI's defaults (temperature 1, top_p 1) rather than the engine's.
    """

    model: str
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None  # extension: llama.cpp, vLLM and TabbyAPI accept it
    min_p: float | None = None  # extension, as above
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repetition_penalty: float | None = None  # extension, as above
    n: int | None = None
    logit_bias: dict[str, float] | None = None
    user: str | None = None

    def stop_list(self) -> list[str]:
        return _stop_list(self.stop)


class ResponseFormat(msgspec.Struct, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"] = "text"
    json_schema: dict[str, Any] | None = None


class ChatCompletionRequest(SamplingFields, kw_only=True, omit_defaults=True):
    messages: list[ChatMessage]
    max_completion_tokens: int | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    parallel_tool_calls: bool | None = None
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    metadata: dict[str, Any] | None = None
    reasoning_effort: str | None = None

    def token_limit(self) -> int | None:
        """``max_completion_tokens`` wins over the deprecated ``max_tokens``."""
        if self.max_completion_tokens is not None:
            return self.max_completion_tokens
        return self.max_tokens


class CompletionRequest(SamplingFields, kw_only=True, omit_defaults=True):
    prompt: str | list[str | int | list[int]] | None = None
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = None
    logprobs: int | None = None


def _stop_list(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop] if stop else []
    return [s for s in stop if s]


# Fields api.openai.com accepts that cortex ignores (no effect on a local model); any
# other top-level field it refuses, so cortex does too (``unknown_request_fields``).
_TOLERATED_CHAT = frozenset(
    {
        "audio",
        "function_call",
        "functions",
        "modalities",
        "prediction",
        "prompt_cache_key",
        "safety_identifier",
        "service_tier",
        "store",
        "verbosity",
        "web_search_options",
    }
)


def _fields(struct: type[msgspec.Struct]) -> frozenset[str]:
    return frozenset(struct.__struct_fields__)


KNOWN_REQUEST_FIELDS = {
    "chat": _fields(ChatCompletionRequest) | _TOLERATED_CHAT,
    "completions": _fields(CompletionRequest),
}


def unknown_request_fields(endpoint: str, fields: Iterable[str]) -> list[str]:
    """The top-level fields of a chat or completions request OpenAI would refuse."""
    known = KNOWN_REQUEST_FIELDS[endpoint]
    return [name for name in fields if name not in known]


# --------------------------------------------------------------------------- response


class PromptTokensDetails(msgspec.Struct):
    cached_tokens: int = 0  # of prompt_tokens, reused from the engine's prefix cache


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None

    @property
    def cached_tokens(self) -> int:
        details = self.prompt_tokens_details
        return details.cached_tokens if details is not None else 0


class Timings(msgspec.Struct, omit_defaults=True):
    """Per-request timings (extension, in the spirit of llama-server's ``timings``)."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    ttft_ms: float = 0.0
    prefill_tokens_per_s: float = 0.0
    decode_tokens_per_s: float = 0.0
    total_ms: float = 0.0
    queue_ms: float = 0.0


class ResponseMessage(msgspec.Struct):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    reasoning_content: str | UnsetType = UNSET
    tool_calls: list[ToolCall] | UnsetType = UNSET


class ChatChoice(msgspec.Struct):
    index: int
    message: ResponseMessage
    finish_reason: FinishReason | None
    logprobs: None = None
    # Extension (vLLM's convention): the stop string that ended the turn, or the stop
    # token id; lets the gateway report Anthropic's stop_reason "stop_sequence".
    stop_reason: str | int | UnsetType | None = UNSET


class ChatCompletion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: str | UnsetType | None = UNSET
    timings: Timings | UnsetType = UNSET


class FunctionCallDelta(msgspec.Struct, omit_defaults=True):
    name: str | None = None
    arguments: str | None = None


class ToolCallDelta(msgspec.Struct, omit_defaults=True):
    index: int
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCallDelta | None = None


class ChoiceDelta(msgspec.Struct, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None
    reasoning_content: str | None = None
    tool_calls: list[ToolCallDelta] | None = None


class ChunkChoice(msgspec.Struct):
    index: int
    delta: ChoiceDelta
    finish_reason: FinishReason | None = None
    logprobs: None = None
    stop_reason: str | int | UnsetType | None = UNSET  # extension, as in ChatChoice


class ChatCompletionChunk(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | UnsetType | None = UNSET
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: str | UnsetType | None = UNSET
    timings: Timings | UnsetType = UNSET


class CompletionChoice(msgspec.Struct):
    index: int
    text: str
    finish_reason: FinishReason | None
    logprobs: None = None


class Completion(msgspec.Struct):
    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | UnsetType | None = UNSET
    object: Literal["text_completion"] = "text_completion"
    system_fingerprint: str | UnsetType | None = UNSET
    timings: Timings | UnsetType = UNSET


# --------------------------------------------------------------------------- models


class ModelCard(msgspec.Struct):
    """One entry of ``GET /v1/models``. ``cortex`` carries state that OpenAI clients ignore."""

    id: str
    created: int = 0
    owned_by: str = "cortex"
    object: Literal["model"] = "model"
    cortex: dict[str, Any] | UnsetType = UNSET


class ModelList(msgspec.Struct):
    data: list[ModelCard]
    object: Literal["list"] = "list"


# --------------------------------------------------------------------------- helpers


def completion_id(prefix: str = "chatcmpl") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())
