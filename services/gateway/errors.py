"""Every error the gateway answers, in the caller's dialect.

``/v1/messages*``, and ``/v1/models*`` asked with ``anthropic-version``, speak
Anthropic's error envelope; everything else (OpenAI routes, ``/fleet``, unknown paths)
speaks OpenAI's. Litestar's own errors (unknown route, wrong
method, body too large, a fleet action body that does not validate) are re-told with a
message that says what to do.
"""

from __future__ import annotations

import logging
from typing import Literal

from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException

from cortex.common.errors import (
    CortexError,
    anthropic_error_body,
    anthropic_message,
    openai_error_body,
)
from cortex.services.gateway import access_log

log = logging.getLogger("cortex.gateway")

Dialect = Literal["openai", "anthropic"]

ROUTES_HINT = (
    "the gateway serves GET /v1/models, GET /v1/models/{id}, POST /v1/chat/completions, "
    "POST /v1/completions, POST /v1/messages, POST /v1/messages/count_tokens, "
    "POST /v1/responses, GET|DELETE /v1/responses/{id}, GET /v1/responses/{id}/input_items, "
    "GET /fleet, GET /fleet/events, "
    "POST /fleet/models/{id}/load|unload|pin|unpin and GET /health"
)


def dialect_for(request: Request) -> Dialect:
    path = request.url.path
    if path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1/models") and "anthropic-version" in request.headers:
        return "anthropic"
    return "openai"


def error_body(error: CortexError, dialect: Dialect) -> bytes:
    return anthropic_error_body(error) if dialect == "anthropic" else openai_error_body(error)


def error_response(error: CortexError, dialect: Dialect, request_id: str | None = None) -> Response:
    headers = error.headers()
    if error.status == 401:
        headers["WWW-Authenticate"] = "Bearer"
    if request_id:
        headers["x-request-id"] = request_id
    return Response(
        content=error_body(error, dialect),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )


def _from_litestar(request: Request, exc: HTTPException) -> CortexError:
    status = exc.status_code
    method, path = request.method, request.url.path
    if status == 404:
        return CortexError(404, f"No route for {method} {path}: {ROUTES_HINT}.", code="not_found")
    if status == 405:
        return CortexError(
            405, f"{path} does not accept {method}: {ROUTES_HINT}.", code="method_not_allowed"
        )
    if status == 413:
        limit = request.app.state.gateway.settings.config.gateway.max_body
        return CortexError(
            413,
            f"The request body is larger than this gateway accepts ({limit} bytes, "
            "gateway.max_body_bytes): send a smaller request or raise the limit.",
            code="request_too_large",
        )
    if isinstance(exc, ValidationException):
        detail = exc.detail
        extra = exc.extra
        if isinstance(extra, list) and extra:
            detail = "; ".join(
                f"{e.get('key', '')}: {e.get('message', '')}" if isinstance(e, dict) else str(e)
                for e in extra
            )
        return CortexError(400, f"Invalid request: {detail}", code="invalid_request")
    return CortexError(status, str(exc.detail))


def handle_exception(request: Request, exc: Exception) -> Response:
    dialect = dialect_for(request)
    if isinstance(exc, CortexError):
        error = exc
    elif isinstance(exc, HTTPException):
        error = _from_litestar(request, exc)
    else:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        error = CortexError(
            500,
            f"The gateway failed unexpectedly ({type(exc).__name__}: {exc}); this is a bug, "
            "please report it with the gateway's log.",
            code="internal_error",
        )
    rid = getattr(request.state, "request_id", None) or request.headers.get("x-request-id")
    # The reason as the client read it (Anthropic's wording of a context overflow).
    access_log.note(reason=anthropic_message(error) if dialect == "anthropic" else error.message)
    return error_response(error, dialect, rid)
