"""Upstream (OpenAI-dialect) errors re-told in Anthropic's dialect.

An upstream error body is an OpenAI envelope (``{"error": {"message", "type", ...}}``);
the client on ``/v1/messages`` must see Anthropic's envelope with the same status and
message. Render the result with :func:`cortex.common.errors.anthropic_error_body`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from cortex.common.errors import CortexError

# Status for an OpenAI error `type` met mid-stream, where there is no HTTP status.
_STATUS_FOR_TYPE = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "permission_error": 403,
    "not_found_error": 404,
    "timeout_error": 504,
    "conflict_error": 409,
    "rate_limit_error": 429,
    "server_error": 500,
    "service_unavailable": 503,
}

_MAX_RAW = 500


def status_for_openai_type(error_type: str | None) -> int:
    """The HTTP status an OpenAI error ``type`` stands for (500 when unknown)."""
    return _STATUS_FOR_TYPE.get(error_type or "", 500)


def error_from_openai(
    status: int | None, body: bytes | str | Mapping[str, Any] | None
) -> CortexError:
    """A :class:`CortexError` carrying the upstream's status, message, code and param.

    ``status`` is the upstream HTTP status, or ``None`` for an error event in a stream
    (then it comes from the error's ``type``). A body that is not an OpenAI envelope
    is kept as the message, shortened.
    """
    payload: Any = body
    if isinstance(body, bytes | str):
        try:
            payload = msgspec.json.decode(body)
        except msgspec.DecodeError:
            payload = None
    detail = payload.get("error") if isinstance(payload, Mapping) else None
    if isinstance(detail, str):  # some servers send {"error": "message"}
        detail = {"message": detail}
    if isinstance(detail, Mapping) and isinstance(detail.get("message"), str):
        return CortexError(
            status if status is not None else status_for_openai_type(detail.get("type")),
            detail["message"],
            code=_str_or_none(detail.get("code")),
            param=_str_or_none(detail.get("param")),
        )
    raw = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = raw.strip() if isinstance(raw, str) else ""
    if len(text) > _MAX_RAW:
        text = text[:_MAX_RAW] + "..."
    status = status if status is not None else 502
    return CortexError(status, text or f"The upstream model server answered HTTP {status}.")


def _str_or_none(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)
