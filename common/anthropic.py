"""Anthropic Messages API wire formats: requests, responses, stream events, count_tokens.

Requests tolerate unknown fields, as api.anthropic.com tolerates new ones (and ignores
``anthropic-beta`` extras); a wrong type or a missing required field (``max_tokens`` is
required, as Anthropic requires it) is rejected with a message naming the field.
``cache_control`` is accepted everywhere Anthropic accepts it and has no effect.
``system`` messages may appear anywhere in ``messages`` (Anthropic's
``mid-conversation-system`` beta, which Claude Code's default model uses).

Responses and stream events encode every field Anthropic sends, ``null`` included
(``stop_reason``, ``stop_sequence``), so the official SDKs validate them. The error
envelope is :class:`cortex.common.errors.AnthropicErrorEnvelope`; its tag makes it the
``error`` stream event as well.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from cortex.common.errors import AnthropicErrorEnvelope

Role = Literal["user", "assistant", "system"]
StopReason = Literal[
    "end_turn",
    "max_tokens",
    "stop_sequence",
    "tool_use",
    "pause_turn",
    "refusal",
    "model_context_window_exceeded",
]

# Accepted wherever Anthropic accepts it; prompt caching is the engine's business.
CacheControl = dict[str, Any] | UnsetType | None

# --------------------------------------------------------------------------- sources


class Base64Source(msgspec.Struct, tag="base64", tag_field="type"):
    media_type: str
    data: str


class URLSource(msgspec.Struct, tag="url", tag_field="type"):
    url: str


class FileSource(msgspec.Struct, tag="file", tag_field="type"):
    file_id: str


class PlainTextSource(msgspec.Struct, tag="text", tag_field="type"):
    data: str
    media_type: str = "text/plain"


class ContentSource(msgspec.Struct, tag="content", tag_field="type"):
    content: str | list[TextBlock | ImageBlock]


ImageSource = Base64Source | URLSource | FileSource
DocumentSource = Base64Source | PlainTextSource | ContentSource | URLSource | FileSource

# --------------------------------------------------------------------------- content blocks


class TextBlock(msgspec.Struct, tag="text", tag_field="type", kw_only=True):
    text: str
    citations: list[dict[str, Any]] | UnsetType | None = UNSET
    cache_control: CacheControl = UNSET


class ImageBlock(msgspec.Struct, tag="image", tag_field="type", kw_only=True, omit_defaults=True):
    source: ImageSource
    cache_control: CacheControl = None


class DocumentBlock(
    msgspec.Struct, tag="document", tag_field="type", kw_only=True, omit_defaults=True
):
    source: DocumentSource
    title: str | None = None
    context: str | None = None
    citations: dict[str, Any] | None = None
    cache_control: CacheControl = None


class SearchResultBlock(
    msgspec.Struct, tag="search_result", tag_field="type", kw_only=True, omit_defaults=True
):
    source: str
    title: str
    content: list[TextBlock]
    citations: dict[str, Any] | None = None
    cache_control: CacheControl = None


class ThinkingBlock(msgspec.Struct, tag="thinking", tag_field="type", kw_only=True):
    thinking: str
    # Anthropic requires it on input; a stream's content_block_start carries "".
    signature: str = ""


class RedactedThinkingBlock(msgspec.Struct, tag="redacted_thinking", tag_field="type"):
    data: str


class ToolUseBlock(msgspec.Struct, tag="tool_use", tag_field="type", kw_only=True):
    id: str
    name: str
    input: dict[str, Any]  # always encoded, even empty: the SDKs require it
    cache_control: CacheControl = UNSET


ToolResultContent = TextBlock | ImageBlock | SearchResultBlock | DocumentBlock


class ToolResultBlock(
    msgspec.Struct, tag="tool_result", tag_field="type", kw_only=True, omit_defaults=True
):
    tool_use_id: str
    content: str | list[ToolResultContent] = ""
    is_error: bool = False
    cache_control: CacheControl = None


InputBlock = (
    TextBlock
    | ImageBlock
    | DocumentBlock
    | SearchResultBlock
    | ThinkingBlock
    | RedactedThinkingBlock
    | ToolUseBlock
    | ToolResultBlock
)
"""A block a client may send in ``messages[].content``."""

ResponseBlock = TextBlock | ThinkingBlock | RedactedThinkingBlock | ToolUseBlock
"""A block cortex returns in ``Message.content``."""

# --------------------------------------------------------------------------- request


class MessageParam(msgspec.Struct):
    role: Role
    content: str | list[InputBlock]


TOOL_SEARCH_PREFIX = "tool_search_tool_"


class Tool(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A client tool. Anthropic's own tools (``web_search_...``, ``bash_...``) carry a
    versioned ``type`` and no ``input_schema``: cortex cannot run or describe them, so
    they are refused with a message that says so. The tool-search tools
    (``tool_search_tool_regex_...``, ``..._bm25_...``) are the exception: they only let
    the model find ``defer_loading`` tools, so cortex accepts them and shows the model
    every tool instead (see :mod:`cortex.services.gateway.anthropic.request`)."""

    name: str
    input_schema: dict[str, Any] | None = None
    description: str | None = None
    type: str | None = None
    strict: bool | None = None
    defer_loading: bool | None = None
    cache_control: CacheControl = None

    @property
    def is_tool_search(self) -> bool:
        return (self.type or "").startswith(TOOL_SEARCH_PREFIX)

    def __post_init__(self) -> None:
        if self.input_schema is not None or self.is_tool_search:
            return
        if self.type not in (None, "custom"):
            raise ValueError(
                f"tool {self.name!r} is Anthropic's server tool type {self.type!r}, which "
                "cortex cannot run; declare it as a custom tool with an input_schema"
            )
        raise ValueError(f"tool {self.name!r} needs an input_schema (a JSON schema object)")


class ToolChoiceAuto(msgspec.Struct, tag="auto", tag_field="type", omit_defaults=True):
    disable_parallel_tool_use: bool = False


class ToolChoiceAny(msgspec.Struct, tag="any", tag_field="type", omit_defaults=True):
    disable_parallel_tool_use: bool = False


class ToolChoiceTool(msgspec.Struct, tag="tool", tag_field="type", omit_defaults=True):
    name: str
    disable_parallel_tool_use: bool = False


class ToolChoiceNone(msgspec.Struct, tag="none", tag_field="type"):
    pass


ToolChoice = ToolChoiceAuto | ToolChoiceAny | ToolChoiceTool | ToolChoiceNone


class ThinkingEnabled(msgspec.Struct, tag="enabled", tag_field="type", omit_defaults=True):
    budget_tokens: int
    display: str | None = None


class ThinkingDisabled(msgspec.Struct, tag="disabled", tag_field="type"):
    pass


class ThinkingAdaptive(msgspec.Struct, tag="adaptive", tag_field="type", omit_defaults=True):
    display: str | None = None


class ThinkingBetweenTools(msgspec.Struct, tag="between_tools", tag_field="type"):
    pass


ThinkingConfig = ThinkingEnabled | ThinkingDisabled | ThinkingAdaptive | ThinkingBetweenTools


class Metadata(msgspec.Struct, omit_defaults=True):
    user_id: str | None = None


class OutputConfig(msgspec.Struct, omit_defaults=True):
    effort: str | None = None
    # {"type": "json_schema", "schema": {...}}: structured output.
    format: dict[str, Any] | None = None


class MessagesBase(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a Messages request and a count_tokens request share."""

    model: str
    messages: Annotated[list[MessageParam], msgspec.Meta(min_length=1)]
    system: str | list[TextBlock] | None = None
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    thinking: ThinkingConfig | None = None
    output_config: OutputConfig | None = None

    @property
    def wants_thinking(self) -> bool:
        """Whether the client asked for thinking blocks (Anthropic sends none otherwise)."""
        return self.thinking is not None and not isinstance(self.thinking, ThinkingDisabled)

    def system_text(self) -> str:
        """The system prompt as one string: text blocks joined by blank lines."""
        if self.system is None:
            return ""
        if isinstance(self.system, str):
            return self.system
        return "\n\n".join(block.text for block in self.system if block.text)


class MessagesRequest(MessagesBase, kw_only=True, omit_defaults=True):
    """``POST /v1/messages``."""

    max_tokens: Annotated[int, msgspec.Meta(ge=1)]
    stream: bool = False
    stop_sequences: list[str] | None = None
    temperature: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    top_p: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)] | None = None
    top_k: Annotated[int, msgspec.Meta(ge=0)] | None = None
    metadata: Metadata | None = None
    service_tier: str | None = None  # tolerated; there is one tier
    container: Any | None = None  # tolerated; no code-execution containers here


class CountTokensRequest(MessagesBase, kw_only=True, omit_defaults=True):
    """``POST /v1/messages/count_tokens``: a Messages request without ``max_tokens``."""


class CountTokensResponse(msgspec.Struct):
    input_tokens: int


# --------------------------------------------------------------------------- response


class Usage(msgspec.Struct, kw_only=True):
    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


class Message(msgspec.Struct, kw_only=True):
    """A Messages response (and the ``message`` of ``message_start``)."""

    id: str  # "msg_..."
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    model: str
    content: list[ResponseBlock]
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None
    usage: Usage


# --------------------------------------------------------------------------- stream events


class TextDelta(msgspec.Struct, tag="text_delta", tag_field="type"):
    text: str


class InputJSONDelta(msgspec.Struct, tag="input_json_delta", tag_field="type"):
    partial_json: str


class ThinkingDelta(msgspec.Struct, tag="thinking_delta", tag_field="type"):
    thinking: str


class SignatureDelta(msgspec.Struct, tag="signature_delta", tag_field="type"):
    signature: str


class CitationsDelta(msgspec.Struct, tag="citations_delta", tag_field="type"):
    citation: dict[str, Any]


BlockDelta = TextDelta | InputJSONDelta | ThinkingDelta | SignatureDelta | CitationsDelta


class MessageStart(msgspec.Struct, tag="message_start", tag_field="type"):
    message: Message


class ContentBlockStart(msgspec.Struct, tag="content_block_start", tag_field="type"):
    index: int
    content_block: ResponseBlock


class ContentBlockDelta(msgspec.Struct, tag="content_block_delta", tag_field="type"):
    index: int
    delta: BlockDelta


class ContentBlockStop(msgspec.Struct, tag="content_block_stop", tag_field="type"):
    index: int


class MessageDeltaBody(msgspec.Struct):
    stop_reason: StopReason | None = None
    stop_sequence: str | None = None


class MessageDeltaUsage(msgspec.Struct, kw_only=True, omit_defaults=True):
    """Cumulative totals. ``input_tokens`` is left out when unknown (clients then keep
    the value from ``message_start``)."""

    output_tokens: int
    input_tokens: int | None = None
    cache_creation_input_tokens: int | None = None
    cache_read_input_tokens: int | None = None


class MessageDelta(msgspec.Struct, tag="message_delta", tag_field="type"):
    delta: MessageDeltaBody
    usage: MessageDeltaUsage


class MessageStop(msgspec.Struct, tag="message_stop", tag_field="type"):
    pass


class Ping(msgspec.Struct, tag="ping", tag_field="type"):
    pass


StreamEvent = (
    MessageStart
    | ContentBlockStart
    | ContentBlockDelta
    | ContentBlockStop
    | MessageDelta
    | MessageStop
    | Ping
    | AnthropicErrorEnvelope
)
"""Every event of a Messages stream; the SSE ``event:`` name equals the ``type``."""


def event_name(event: StreamEvent) -> str:
    """The SSE event name of a stream event (its ``type`` tag)."""
    return type(event).__struct_config__.tag  # type: ignore[return-value]


# --------------------------------------------------------------------------- models API


class ModelInfo(msgspec.Struct, kw_only=True):
    """One model of ``GET /v1/models`` (Anthropic's shape, when ``anthropic-version`` is sent)."""

    type: Literal["model"] = "model"
    id: str
    display_name: str
    created_at: str  # RFC 3339


class ModelInfoList(msgspec.Struct, kw_only=True):
    data: list[ModelInfo]
    has_more: bool = False
    first_id: str | None = None
    last_id: str | None = None
