"""Error envelopes of both client dialects, and the one exception the services raise.

Every error a client sees carries a status code and a message that says what to fix.
Services raise :class:`CortexError`; the HTTP layer renders it in the caller's dialect
(OpenAI or Anthropic) with :func:`openai_error_body` or :func:`anthropic_error_body`.
"""

from __future__ import annotations

import re
from typing import TypeVar

import msgspec

T = TypeVar("T")

# OpenAI `error.type` for a status code, as api.openai.com uses them.
_OPENAI_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "service_unavailable",
    504: "timeout_error",
}

# Anthropic `error.type` for a status code, from Anthropic's error documentation.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "invalid_request_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


class OpenAIErrorDetail(msgspec.Struct):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class OpenAIErrorEnvelope(msgspec.Struct):
    error: OpenAIErrorDetail


class AnthropicErrorDetail(msgspec.Struct):
    type: str
    message: str


class AnthropicErrorEnvelope(msgspec.Struct, tag="error", tag_field="type"):
    error: AnthropicErrorDetail


class CortexError(Exception):
    """An error with an HTTP status, a message that says what to fix, and an optional code.

    ``code`` is a stable machine-readable string (``model_not_found``,
    ``context_length_exceeded``, ...); ``param`` names the offending request field.
    ``retry_after`` (seconds) becomes a ``Retry-After`` header.
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"CortexError({self.status}, {self.message!r}, code={self.code!r})"

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, round(self.retry_after)))}


def openai_error_type(status: int) -> str:
    return _OPENAI_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")


def anthropic_error_type(status: int) -> str:
    return _ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def openai_error(error: CortexError) -> OpenAIErrorEnvelope:
    return OpenAIErrorEnvelope(
        OpenAIErrorDetail(
            message=error.message,
            type=openai_error_type(error.status),
            param=error.param,
            code=error.code,
        )
    )


# OpenAI's (and vLLM's, and the neuron's) context overflow wording.
_OPENAI_OVERFLOW = re.compile(
    r"maximum context length is (\d+) tokens.*?\((\d+) in the prompt, (\d+) for the completion\)",
    re.S,
)


def anthropic_overflow_message(prompt_tokens: int, max_tokens: int, limit: int) -> str:
    """Anthropic's exact context overflow texts. Claude Code matches them: on the first
    it retries with a smaller ``max_tokens``, on the second it compacts the conversation;
    any other wording is a fatal error to it."""
    if prompt_tokens >= limit:
        return f"prompt is too long: {prompt_tokens} tokens > {limit} maximum"
    return (
        f"input length and `max_tokens` exceed context limit: {prompt_tokens} + {max_tokens} "
        f"> {limit}, decrease input length or `max_tokens` and try again"
    )


def anthropic_message(error: CortexError) -> str:
    """The error's message as Anthropic words it (context overflow), else unchanged."""
    if error.code == "context_length_exceeded":
        found = _OPENAI_OVERFLOW.search(error.message)
        if found is not None:
            limit, prompt, completion = (int(n) for n in found.groups())
            return anthropic_overflow_message(prompt, completion, limit)
    return error.message


def anthropic_error(error: CortexError) -> AnthropicErrorEnvelope:
    return AnthropicErrorEnvelope(
        AnthropicErrorDetail(
            type=anthropic_error_type(error.status), message=anthropic_message(error)
        )
    )


def openai_error_body(error: CortexError) -> bytes:
    return msgspec.json.encode(openai_error(error))


def anthropic_error_body(error: CortexError) -> bytes:
    return msgspec.json.encode(anthropic_error(error))


def validation_message(exc: msgspec.ValidationError | msgspec.DecodeError, at: str = "") -> str:
    """Turn a msgspec error into a sentence naming the field, e.g. ``messages[0].role``.

    ``at`` is where the decoded value sits in the body (``input[3]``) when it was
    converted on its own."""
    text = str(exc)
    if isinstance(exc, msgspec.ValidationError):
        head, sep, path = text.rpartition(" - at `")
        if sep:
            field = _field_path(at, path)
            return f"Invalid request body: {head} (field `{field}`)"
        return f"Invalid request body: {text}" + (f" (field `{at}`)" if at else "")
    return f"Request body is not valid JSON: {text}"


def _field_path(at: str, path: str) -> str:
    inner = path.rstrip("`").removeprefix("$")
    return (at + inner) if at else inner.lstrip(".")


def invalid_body(exc: msgspec.ValidationError | msgspec.DecodeError, at: str = "") -> CortexError:
    """A 400 for a body that failed to decode, naming the field that was wrong."""
    param = at or None
    if isinstance(exc, msgspec.ValidationError):
        _, sep, path = str(exc).rpartition(" - at `")
        if sep:
            param = _field_path(at, path) or None
    return CortexError(400, validation_message(exc, at), code="invalid_request", param=param)


def decode_body(body: bytes, type_: type[T]) -> T:
    """Decode a JSON request body into ``type_``, raising a 400 :class:`CortexError`."""
    if not body.strip():
        raise CortexError(400, "Request body is empty: send a JSON object.", code="invalid_request")
    try:
        return msgspec.json.decode(body, type=type_)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise invalid_body(exc) from None
