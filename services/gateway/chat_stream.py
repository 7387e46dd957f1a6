"""What the translated dialects (Anthropic, Responses) share in reading a neuron's chat
stream: tool-call deltas gathered into calls, and payloads that are not chunks."""

from __future__ import annotations

from dataclasses import dataclass, field

import msgspec

from cortex.common import openai as o
from cortex.common.errors import CortexError
from cortex.services.gateway.anthropic.errors import error_from_openai


@dataclass(slots=True)
class UpstreamCall:
    """One upstream tool call (by its OpenAI ``index``) and where it went out."""

    id: str | None
    name: str | None
    opened: int | None = None  # the block / output item it became, once named
    pending: list[str] = field(default_factory=list)  # arguments that came before the name
    sent_arguments: bool = False


def track_call(calls: dict[int, UpstreamCall], delta: o.ToolCallDelta) -> UpstreamCall:
    """The call ``delta`` belongs to, registered in ``calls``; a delta with a new id at a
    known index starts a new call (some servers reuse index 0 for every call)."""
    function = delta.function
    call = calls.get(delta.index)
    if call is None or (delta.id and call.id and delta.id != call.id):
        call = UpstreamCall(id=delta.id, name=function.name if function else None)
        calls[delta.index] = call
    else:
        call.id = call.id or delta.id
        if function is not None and function.name and not call.name:
            call.name = function.name
    return call


def not_a_chunk(payload: str, exc: Exception) -> CortexError:
    """The error for a stream payload that is no chunk: the upstream's own error event,
    or one saying the chunk cannot be read."""
    try:
        body = msgspec.json.decode(payload)
    except msgspec.DecodeError:
        body = None
    if isinstance(body, dict) and "error" in body:
        return error_from_openai(None, body)
    return unreadable_chunk(str(exc))


def unreadable_chunk(detail: str) -> CortexError:
    return CortexError(
        502, f"The upstream model server sent a stream chunk cortex cannot read: {detail}"
    )


def interleaved_calls(dialect: str) -> CortexError:
    return CortexError(
        502,
        "The upstream model server interleaved the arguments of two tool calls, which "
        f"{dialect} stream cannot carry; retry the request.",
    )
