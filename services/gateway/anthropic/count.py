"""``/v1/messages/count_tokens`` through the model's own chat template.

The request is translated exactly like a Messages request and sent to the neuron's
``POST /tokenize`` as OpenAI-shaped messages and tools, so the count is the prompt the
model would really see (system prompt, tool definitions and generation prompt included).
"""

from __future__ import annotations

import msgspec

from cortex.common import anthropic as a
from cortex.common.neuron import TokenizeRequest, TokenizeResponse

from .request import to_openai_messages, to_openai_tools, tool_names


def to_openai_count(req: a.MessagesBase) -> tuple[list[dict], list[dict] | None]:
    """OpenAI-shaped ``(messages, tools)`` for the neuron's ``/tokenize``."""
    names = tool_names(req)
    messages = msgspec.to_builtins(to_openai_messages(req, names))
    tools = to_openai_tools(req, names)
    if not tools:
        return messages, None
    # Spelled out: the struct leaves its default ``type`` out, and templates read it.
    return messages, [
        {"type": "function", "function": msgspec.to_builtins(tool.function)} for tool in tools
    ]


def to_tokenize_request(req: a.MessagesBase, *, model: str | None = None) -> TokenizeRequest:
    """The neuron ``/tokenize`` request counting ``req``'s prompt (``model`` replaces
    the request's model, e.g. with the resolved id)."""
    messages, tools = to_openai_count(req)
    return TokenizeRequest(
        model=model or req.model, messages=messages, tools=tools, add_generation_prompt=True
    )


def count_tokens_response(resp: TokenizeResponse) -> a.CountTokensResponse:
    return a.CountTokensResponse(input_tokens=resp.count)
