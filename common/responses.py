"""OpenAI Responses API wire formats: requests, input and output items, the Response
object, its stream events, and the stored-response listing.

Requests tolerate unknown fields (as api.openai.com does). ``input`` items and
``tools`` arrive as plain objects and are converted one by one
(:func:`cortex.services.gateway.responses.request.parse_items`), so a message without
``type`` is read as a message (OpenAI's "easy input message") and an error names the
item (``input[3].call_id``); an item's optional fields may be ``null``. Responses and
events encode every field OpenAI sends,
``null`` included, so the SDKs validate them; items leave out what they were not given
(an input item's ``id``, a call's ``namespace``).
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

from cortex.common import openai as o

ItemStatus = Literal["in_progress", "completed", "incomplete"]
ResponseStatus = Literal["completed", "incomplete", "in_progress", "failed", "cancelled", "queued"]

# --------------------------------------------------------------------------- content parts


class InputText(msgspec.Struct, tag="input_text", tag_field="type"):
    text: str


class OutputText(msgspec.Struct, tag="output_text", tag_field="type", kw_only=True):
    text: str
    annotations: list[dict[str, Any]] = []
    logprobs: list[dict[str, Any]] = []


class InputImage(
    msgspec.Struct, tag="input_image", tag_field="type", kw_only=True, omit_defaults=True
):
    image_url: str | None = None
    file_id: str | None = None
    detail: str = "auto"


class InputFile(
    msgspec.Struct, tag="input_file", tag_field="type", kw_only=True, omit_defaults=True
):
    file_id: str | None = None
    file_data: str | None = None
    file_url: str | None = None
    filename: str | None = None


class Refusal(msgspec.Struct, tag="refusal", tag_field="type"):
    refusal: str


class SummaryText(msgspec.Struct, tag="summary_text", tag_field="type"):
    text: str


class ReasoningText(msgspec.Struct, tag="reasoning_text", tag_field="type"):
    text: str


ContentPart = InputText | OutputText | InputImage | InputFile | Refusal

# --------------------------------------------------------------------------- items


class Message(msgspec.Struct, tag="message", tag_field="type", kw_only=True, omit_defaults=True):
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]
    id: str | UnsetType | None = UNSET
    status: ItemStatus | UnsetType | None = UNSET


class FunctionCall(
    msgspec.Struct, tag="function_call", tag_field="type", kw_only=True, omit_defaults=True
):
    call_id: str
    name: str
    arguments: str
    id: str | UnsetType | None = UNSET
    namespace: str | UnsetType | None = UNSET
    status: ItemStatus | UnsetType | None = UNSET


class FunctionCallOutput(
    msgspec.Struct, tag="function_call_output", tag_field="type", kw_only=True, omit_defaults=True
):
    call_id: str
    output: str | list[ContentPart]
    id: str | UnsetType | None = UNSET
    status: ItemStatus | UnsetType | None = UNSET


class Reasoning(
    msgspec.Struct, tag="reasoning", tag_field="type", kw_only=True, omit_defaults=True
):
    summary: list[SummaryText]
    id: str | UnsetType | None = UNSET
    content: list[ReasoningText] | UnsetType | None = UNSET
    # Accepted back from clients (Codex asks for it); a local model has nothing to encrypt.
    encrypted_content: str | UnsetType | None = UNSET
    status: ItemStatus | UnsetType | None = UNSET


class ItemReference(msgspec.Struct, tag="item_reference", tag_field="type"):
    id: str


InputItem = Message | FunctionCall | FunctionCallOutput | Reasoning | ItemReference
OutputItem = Message | FunctionCall | Reasoning

# --------------------------------------------------------------------------- tools


class FunctionTool(
    msgspec.Struct, tag="function", tag_field="type", kw_only=True, omit_defaults=True
):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class NamespaceTool(msgspec.Struct, tag="namespace", tag_field="type", kw_only=True):
    """A group of functions (Codex's ``multi_agent_v1``); calls carry ``namespace``."""

    name: str
    tools: list[dict[str, Any]]
    description: str = ""


# --------------------------------------------------------------------------- request


class TextFormat(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema: dict[str, Any] | None = None
    description: str | None = None
    strict: bool | None = None


class TextConfig(msgspec.Struct, kw_only=True):
    format: TextFormat = msgspec.field(default_factory=lambda: TextFormat(type="text"))
    verbosity: str | None = None


class ReasoningConfig(msgspec.Struct, kw_only=True):
    effort: str | None = None
    summary: str | None = None


class ResponsesRequest(msgspec.Struct, kw_only=True):
    model: str
    input: str | list[dict[str, Any]] = []
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    max_output_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    text: TextConfig | None = None
    reasoning: ReasoningConfig | None = None
    metadata: dict[str, str] | None = None
    user: str | None = None
    prompt_cache_key: str | None = None
    include: list[str] | None = None
    store: bool = True
    stream: bool = False
    previous_response_id: str | None = None
    background: bool | None = None
    truncation: str | None = None
    # OpenAI-hosted state cortex does not keep: refused when given.
    conversation: str | dict[str, Any] | None = None
    prompt: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.max_output_tokens is not None and self.max_output_tokens < 1:
            raise ValueError("`max_output_tokens` must be >= 1")


# --------------------------------------------------------------------------- response


class InputTokensDetails(msgspec.Struct):
    cached_tokens: int = 0
    cache_write_tokens: int = 0  # required by current SDKs; a local engine reports none


class OutputTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ResponseUsage(msgspec.Struct):
    input_tokens: int
    output_tokens: int
    total_tokens: int
    input_tokens_details: InputTokensDetails = msgspec.field(default_factory=InputTokensDetails)
    output_tokens_details: OutputTokensDetails = msgspec.field(default_factory=OutputTokensDetails)


class IncompleteDetails(msgspec.Struct):
    reason: Literal["max_output_tokens", "content_filter"]


class ResponseError(msgspec.Struct):
    code: str
    message: str


class Response(msgspec.Struct, kw_only=True):
    id: str
    created_at: int
    model: str
    status: ResponseStatus
    output: list[OutputItem]
    object: Literal["response"] = "response"
    background: bool = False
    error: ResponseError | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    max_output_tokens: int | None = None
    parallel_tool_calls: bool = True
    previous_response_id: str | None = None
    reasoning: ReasoningConfig = msgspec.field(default_factory=ReasoningConfig)
    store: bool = True
    temperature: float | None = None
    text: TextConfig = msgspec.field(default_factory=TextConfig)
    tool_choice: str | dict[str, Any] = "auto"
    tools: list[dict[str, Any]] = []
    top_p: float | None = None
    truncation: str = "disabled"
    usage: ResponseUsage | None = None
    user: str | None = None
    metadata: dict[str, str] = {}
    prompt_cache_key: str | None = None


class DeletedResponse(msgspec.Struct):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


class InputItemList(msgspec.Struct, kw_only=True):
    data: list[InputItem]
    first_id: str | None
    last_id: str | None
    has_more: bool
    object: Literal["list"] = "list"


class StoredResponse(msgspec.Struct, kw_only=True):
    """What the store keeps per response: the Response, the request's own input items
    (``GET .../input_items``), and the whole conversation before its output, which
    ``previous_response_id`` continues (kept whole, so no ancestor is needed later)."""

    response: Response
    input_items: list[InputItem]
    context: list[InputItem]


# --------------------------------------------------------------------------- upstream usage


class CompletionTokensDetails(msgspec.Struct):
    reasoning_tokens: int = 0


class ChatUsage(o.Usage):
    """A neuron's chat usage with the details Responses reports (when it sends them);
    ``prompt_tokens_details`` comes from the OpenAI ``Usage``."""

    completion_tokens_details: CompletionTokensDetails | None = None


class ChatCompletionChunk(o.ChatCompletionChunk):
    usage: ChatUsage | UnsetType | None = UNSET


class ChatCompletion(o.ChatCompletion):
    usage: ChatUsage | None = None


# --------------------------------------------------------------------------- stream events


class _Event(msgspec.Struct, tag_field="type", kw_only=True):
    sequence_number: int = 0


class ResponseCreated(_Event, tag="response.created"):
    response: Response


class ResponseInProgress(_Event, tag="response.in_progress"):
    response: Response


class ResponseCompleted(_Event, tag="response.completed"):
    response: Response


class ResponseIncomplete(_Event, tag="response.incomplete"):
    response: Response


class ResponseFailed(_Event, tag="response.failed"):
    response: Response


class OutputItemAdded(_Event, tag="response.output_item.added"):
    output_index: int
    item: OutputItem


class OutputItemDone(_Event, tag="response.output_item.done"):
    output_index: int
    item: OutputItem


class ContentPartAdded(_Event, tag="response.content_part.added"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class ContentPartDone(_Event, tag="response.content_part.done"):
    item_id: str
    output_index: int
    content_index: int
    part: OutputText


class OutputTextDelta(_Event, tag="response.output_text.delta"):
    item_id: str
    output_index: int
    content_index: int
    delta: str
    logprobs: list[dict[str, Any]] = []


class OutputTextDone(_Event, tag="response.output_text.done"):
    item_id: str
    output_index: int
    content_index: int
    text: str
    logprobs: list[dict[str, Any]] = []


class FunctionCallArgumentsDelta(_Event, tag="response.function_call_arguments.delta"):
    item_id: str
    output_index: int
    delta: str


class FunctionCallArgumentsDone(_Event, tag="response.function_call_arguments.done"):
    item_id: str
    output_index: int
    arguments: str
    name: str


class ReasoningSummaryPartAdded(_Event, tag="response.reasoning_summary_part.added"):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ReasoningSummaryPartDone(_Event, tag="response.reasoning_summary_part.done"):
    item_id: str
    output_index: int
    summary_index: int
    part: SummaryText


class ReasoningSummaryTextDelta(_Event, tag="response.reasoning_summary_text.delta"):
    item_id: str
    output_index: int
    summary_index: int
    delta: str


class ReasoningSummaryTextDone(_Event, tag="response.reasoning_summary_text.done"):
    item_id: str
    output_index: int
    summary_index: int
    text: str


class ErrorEvent(_Event, tag="error"):
    message: str
    code: str | None = None
    param: str | None = None


StreamEvent = (
    ResponseCreated
    | ResponseInProgress
    | ResponseCompleted
    | ResponseIncomplete
    | ResponseFailed
    | OutputItemAdded
    | OutputItemDone
    | ContentPartAdded
    | ContentPartDone
    | OutputTextDelta
    | OutputTextDone
    | FunctionCallArgumentsDelta
    | FunctionCallArgumentsDone
    | ReasoningSummaryPartAdded
    | ReasoningSummaryPartDone
    | ReasoningSummaryTextDelta
    | ReasoningSummaryTextDone
    | ErrorEvent
)


def event_name(event: StreamEvent) -> str:
    return type(event).__struct_config__.tag  # type: ignore[return-value]
