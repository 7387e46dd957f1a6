"""OpenAI chat completions as Anthropic Messages (non-stream), and the shared mappings.

- Blocks go in Anthropic's order: ``thinking`` (from ``reasoning_content``, with a
  synthetic signature, since Claude Code expects one), ``text``, then ``tool_use``.
  Thinking blocks only when the request asked for thinking, as Anthropic does; the
  model's reasoning is dropped otherwise.
- Usage: the upstream's cached prompt tokens (``prompt_tokens_details.cached_tokens``)
  are ``cache_read_input_tokens``, and ``input_tokens`` the rest, as Anthropic counts.
- A tool call whose arguments are not a JSON object cannot be a ``tool_use`` block
  (Anthropic's ``input`` is an object): it becomes a text block holding the raw
  arguments, and counts as no tool call for ``stop_reason``. (The neuron only emits
  calls whose arguments parse; this guards other upstreams.)
- Whitespace-only text beside other blocks (the newline a model writes between
  ``</think>`` and a tool call) is dropped rather than sent as a block of its own.
- ``stop_reason``: ``stop`` -> ``end_turn``, or ``stop_sequence`` when the upstream
  reports (vLLM's ``choices[].stop_reason`` extension) that one of the request's
  ``stop_sequences`` ended the turn; ``length`` -> ``max_tokens`` (even mid tool call);
  ``content_filter`` -> ``refusal``; ``tool_calls``, or any other finish with tool_use
  blocks, -> ``tool_use``.
  An upstream that does not report the matched stop string gives ``end_turn``: an OpenAI
  ``stop`` does not say whether EOS or a stop string ended the turn.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence

import msgspec

from cortex.common import anthropic as a
from cortex.common import openai as o

from .names import ToolNameMap
from .request import tool_names

# Claude Code keeps and echoes the signature; local models have nothing to sign.
THINKING_SIGNATURE = "cortex-local-reasoning"


def new_message_id() -> str:
    return f"msg_{secrets.token_hex(12)}"


def new_tool_use_id() -> str:
    return f"toolu_{secrets.token_hex(12)}"


def stop_reason_for(
    finish_reason: str | None,
    *,
    has_tool_use: bool,
    matched_stop: str | int | None = None,
    stop_sequences: Sequence[str] = (),
) -> tuple[a.StopReason, str | None]:
    """Anthropic ``(stop_reason, stop_sequence)`` for an OpenAI finish.

    ``has_tool_use`` says whether tool_use blocks went to the client: a ``tool_calls``
    finish without one (its calls were unusable) is an ``end_turn``, and a turn cut by
    the token limit is ``max_tokens`` even mid-call, so the client knows to continue.
    """
    if finish_reason == "length":
        return "max_tokens", None
    if finish_reason == "content_filter":
        return "refusal", None
    if has_tool_use:
        return "tool_use", None
    if isinstance(matched_stop, str) and matched_stop in stop_sequences:
        return "stop_sequence", matched_stop
    return "end_turn", None


def usage_from_openai(usage: o.Usage | None) -> a.Usage:
    if usage is None:
        return a.Usage(input_tokens=0, output_tokens=0)
    cached = usage.cached_tokens
    return a.Usage(
        input_tokens=usage.prompt_tokens - cached,
        output_tokens=usage.completion_tokens,
        cache_read_input_tokens=cached,
    )


def from_openai_response(
    resp: o.ChatCompletion,
    request: a.MessagesBase | None = None,
    *,
    model: str | None = None,
) -> a.Message:
    """The Anthropic Message for an OpenAI chat completion.

    ``request`` (the client's Messages request) supplies the tool names to restore and
    the stop sequences to recognise; ``model`` replaces the upstream's model name (e.g.
    the name the client asked for).
    """
    names = tool_names(request) if request is not None else ToolNameMap()
    stops = getattr(request, "stop_sequences", None) or ()
    choice = resp.choices[0] if resp.choices else None
    blocks: list[a.ResponseBlock] = []
    tool_blocks: list[a.ResponseBlock] = []
    has_tool_use = False
    text = ""
    if choice is not None:
        message = choice.message
        if message.reasoning_content and (request is None or request.wants_thinking):
            blocks.append(
                a.ThinkingBlock(thinking=message.reasoning_content, signature=THINKING_SIGNATURE)
            )
        text = message.content or ""
        for call in message.tool_calls or ():
            block = _tool_block(call, names)
            has_tool_use = has_tool_use or isinstance(block, a.ToolUseBlock)
            tool_blocks.append(block)
    if text and not (text.isspace() and (blocks or tool_blocks)):
        blocks.append(a.TextBlock(text=text))
    blocks.extend(tool_blocks)
    stop_reason, stop_sequence = stop_reason_for(
        choice.finish_reason if choice is not None else None,
        has_tool_use=has_tool_use,
        matched_stop=_matched_stop(choice),
        stop_sequences=stops,
    )
    return a.Message(
        id=new_message_id(),
        model=model or resp.model,
        content=blocks,
        stop_reason=stop_reason,
        stop_sequence=stop_sequence,
        usage=usage_from_openai(resp.usage),
    )


def _matched_stop(choice: o.ChatChoice | None) -> str | int | None:
    if choice is None or choice.stop_reason is msgspec.UNSET:
        return None
    return choice.stop_reason


def _tool_block(call: o.ToolCall, names: ToolNameMap) -> a.ResponseBlock:
    raw = call.function.arguments
    try:
        arguments = msgspec.json.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError:
        arguments = None
    if not isinstance(arguments, dict):
        return a.TextBlock(text=raw)
    return a.ToolUseBlock(
        id=call.id or new_tool_use_id(),
        name=names.to_anthropic(call.function.name),
        input=arguments,
    )
