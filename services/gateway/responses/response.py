"""A neuron's chat completion as a Response (non-stream), and what both projections share:
the turn a request makes, output items, status and usage.

- Output items go in OpenAI's order: ``reasoning`` (the model's ``<think>`` text, which
  the neuron sends as ``reasoning_content``, as one ``summary_text``), the assistant
  ``message`` (one ``output_text`` part), then one ``function_call`` per tool call.
- Whitespace-only text beside other items (the newline a model writes between
  ``</think>`` and a tool call) is dropped rather than sent as a message of its own.
- Status: ``length`` -> ``incomplete`` with ``incomplete_details.reason =
  "max_output_tokens"`` (also when the context ran out), ``content_filter`` ->
  ``incomplete`` / ``content_filter``; anything else -> ``completed``. The items of an
  incomplete response are ``incomplete`` too.
- Usage: ``input_tokens`` / ``output_tokens`` from the neuron, ``cached_tokens`` from its
  ``prompt_tokens_details`` and ``reasoning_tokens`` from its
  ``completion_tokens_details`` when it reports them (else 0).
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field

from cortex.common import openai as o
from cortex.common import responses as r

from .request import Functions


def new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(24)}"


@dataclass
class Turn:
    """One Responses request on its way: what the projections and the store need."""

    request: r.ResponsesRequest
    functions: Functions
    input_items: list[r.InputItem]  # this request's own items, each with an id
    context: list[r.InputItem]  # the whole conversation the model sees, input last
    response_id: str = field(default_factory=lambda: new_id("resp"))
    created_at: int = field(default_factory=lambda: int(time.time()))

    def response(
        self,
        status: r.ResponseStatus,
        output: list[r.OutputItem],
        usage: r.ResponseUsage | None = None,
        *,
        incomplete: r.IncompleteDetails | None = None,
        error: r.ResponseError | None = None,
    ) -> r.Response:
        req = self.request
        return r.Response(
            id=self.response_id,
            created_at=self.created_at,
            model=req.model,
            status=status,
            output=output,
            error=error,
            incomplete_details=incomplete,
            instructions=req.instructions,
            max_output_tokens=req.max_output_tokens,
            parallel_tool_calls=req.parallel_tool_calls is not False,
            previous_response_id=req.previous_response_id,
            reasoning=req.reasoning or r.ReasoningConfig(),
            store=req.store,
            temperature=req.temperature,
            text=req.text or r.TextConfig(),
            tool_choice=req.tool_choice or "auto",
            tools=req.tools or [],
            top_p=req.top_p,
            truncation=req.truncation or "disabled",
            usage=usage,
            user=req.user,
            metadata=req.metadata or {},
            prompt_cache_key=req.prompt_cache_key,
        )

    @property
    def inherited(self) -> int:
        """How many items of ``context`` came from ``previous_response_id``."""
        return len(self.context) - len(self.input_items)

    def stored(self, response: r.Response) -> r.StoredResponse:
        return r.StoredResponse(
            response=response, input_items=self.input_items, context=self.context
        )


def status_for(
    finish_reason: str | None,
) -> tuple[r.ResponseStatus, r.IncompleteDetails | None]:
    if finish_reason == "length":
        return "incomplete", r.IncompleteDetails(reason="max_output_tokens")
    if finish_reason == "content_filter":
        return "incomplete", r.IncompleteDetails(reason="content_filter")
    return "completed", None


def item_status(status: r.ResponseStatus) -> r.ItemStatus:
    return "incomplete" if status == "incomplete" else "completed"


def usage_for(usage: r.ChatUsage | o.Usage | None, output_tokens: int = 0) -> r.ResponseUsage:
    """Responses usage for the neuron's; ``output_tokens`` counts when it sent none."""
    if usage is None:
        return r.ResponseUsage(
            input_tokens=0, output_tokens=output_tokens, total_tokens=output_tokens
        )
    cached, reasoning = usage.cached_tokens, 0
    if isinstance(usage, r.ChatUsage) and usage.completion_tokens_details is not None:
        reasoning = usage.completion_tokens_details.reasoning_tokens
    return r.ResponseUsage(
        input_tokens=usage.prompt_tokens,
        output_tokens=usage.completion_tokens,
        total_tokens=usage.prompt_tokens + usage.completion_tokens,
        input_tokens_details=r.InputTokensDetails(cached_tokens=cached),
        output_tokens_details=r.OutputTokensDetails(reasoning_tokens=reasoning),
    )


def reasoning_item(item_id: str, text: str) -> r.Reasoning:
    return r.Reasoning(id=item_id, summary=[r.SummaryText(text)] if text else [])


def message_item(item_id: str, text: str, status: r.ItemStatus) -> r.Message:
    return r.Message(id=item_id, role="assistant", status=status, content=[r.OutputText(text=text)])


def call_item(
    item_id: str,
    call_id: str,
    upstream_name: str,
    arguments: str,
    status: r.ItemStatus,
    functions: Functions,
) -> r.FunctionCall:
    name, namespace = functions.client(upstream_name)
    call = r.FunctionCall(
        id=item_id, call_id=call_id, name=name, arguments=arguments, status=status
    )
    if namespace is not None:
        call.namespace = namespace
    return call


def from_chat_completion(completion: r.ChatCompletion, turn: Turn) -> r.Response:
    """The Response for a neuron's (non-stream) chat completion."""
    choice = completion.choices[0] if completion.choices else None
    status, incomplete = status_for(choice.finish_reason if choice else None)
    state = item_status(status)
    output: list[r.OutputItem] = []
    calls: list[r.OutputItem] = []
    text = ""
    if choice is not None:
        message = choice.message
        if isinstance(message.reasoning_content, str) and message.reasoning_content:
            output.append(reasoning_item(new_id("rs"), message.reasoning_content))
        text = message.content or ""
        for call in message.tool_calls or ():
            calls.append(
                call_item(
                    new_id("fc"),
                    call.id or new_id("call"),
                    call.function.name,
                    call.function.arguments,
                    state,
                    turn.functions,
                )
            )
    if (text and not (text.isspace() and (output or calls))) or not (output or calls):
        output.append(message_item(new_id("msg"), text, state))
    output.extend(calls)
    return turn.response(status, output, usage_for(completion.usage), incomplete=incomplete)
