"""HTTP plumbing shared by the neuron's routes: errors in OpenAI's envelope, the bearer
token, ``x-request-id``, and one-line logging that carries the request id.
"""

from __future__ import annotations

import contextvars
import hmac
import logging
import uuid

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cortex.common.errors import CortexError, openai_error_body

log = logging.getLogger("cortex.neuron.http")

REQUEST_ID_HEADER = "x-request-id"
request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")

OPEN_PATHS = frozenset({"/health"})


def error_response(error: CortexError) -> Response:
    headers = error.headers()
    return Response(
        content=openai_error_body(error),
        status_code=error.status,
        media_type="application/json",
        headers=headers,
    )


def refused(request: Request, error: CortexError) -> Response:
    """The error answer, logged in one line with its reason (the request never ran, so
    the manager's per-request line does not cover it)."""
    log.log(
        logging.ERROR if error.status >= 500 else logging.INFO,
        "request %s %s %s status=%d code=%s reason=%s",
        request_id_var.get(),
        request.method,
        request.url.path,
        error.status,
        error.code or "-",
        error.message,
    )
    return error_response(error)


def cortex_error_handler(request: Request, exc: CortexError) -> Response:
    return refused(request, exc)


def validation_error_handler(request: Request, exc: ValidationException) -> Response:
    """Litestar's body validation, re-worded to name the field (as decode_body does)."""
    extra = exc.extra if isinstance(exc.extra, list) else []
    first = extra[0] if extra and isinstance(extra[0], dict) else {}
    key = first.get("key")
    message = first.get("message") or exc.detail
    if key == "data" or not key:
        text = f"Invalid request body: {message}. Send a JSON object."
        if key == "data":
            text = "Request body is empty or not a JSON object: send a JSON object."
        return refused(request, CortexError(400, text, code="invalid_request"))
    return refused(
        request,
        CortexError(
            400,
            f"Invalid request body: {message} (field `{key}`)",
            code="invalid_request",
            param=str(key),
        ),
    )


def http_error_handler(request: Request, exc: HTTPException) -> Response:
    status = exc.status_code
    detail = exc.detail
    if status == 404:
        detail = f"No route {request.method} {request.url.path} on this neuron."
    elif status == 405:
        detail = f"Method {request.method} is not allowed on {request.url.path}."
    elif status == 413:
        detail = (
            f"The request body is larger than this neuron accepts "
            f"({request.app.request_max_body_size} bytes, neuron.max_body_bytes in "
            "neuron.toml): send a smaller request or raise the limit."
        )
    code = {404: "not_found", 405: "method_not_allowed", 413: "request_too_large"}.get(status)
    error = CortexError(status, detail, code=code)
    headers = dict(exc.headers or {})
    response = refused(request, error)
    response.headers.update(headers)
    return response


def internal_error_handler(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(
        CortexError(500, f"Internal error: {type(exc).__name__}: {exc}", code="internal_error")
    )


EXCEPTION_HANDLERS = {
    CortexError: cortex_error_handler,
    ValidationException: validation_error_handler,
    HTTPException: http_error_handler,
    Exception: internal_error_handler,
}


class RequestIdAndAuth:
    """ASGI middleware: assign/echo ``x-request-id`` and enforce the bearer token."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode() if token else b""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        given = headers.get(REQUEST_ID_HEADER.encode(), b"").decode("latin-1").strip()
        request_id = given[:128] if given else uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        token = request_id_var.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    (REQUEST_ID_HEADER.encode(), request_id.encode("latin-1")),
                ]
            await send(message)

        try:
            if self.token and scope.get("path") not in OPEN_PATHS:
                supplied = headers.get(b"authorization", b"")
                scheme, _, value = supplied.partition(b" ")
                if scheme.lower() != b"bearer" or not hmac.compare_digest(
                    value.strip(), self.token
                ):
                    await _send_error(
                        send_with_id,
                        CortexError(
                            401,
                            "Missing or wrong bearer token: send `Authorization: Bearer <token>` "
                            "with the token in this neuron's neuron.toml.",
                            code="invalid_api_key",
                        ),
                    )
                    return
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)


async def _send_error(send: Send, error: CortexError) -> None:
    body = openai_error_body(error)
    await send(
        {
            "type": "http.response.start",
            "status": error.status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b"Bearer"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body, "more_body": False})


def request_id(request: Request) -> str:
    return request.scope.get("state", {}).get("request_id") or uuid.uuid4().hex[:16]


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        return True


def configure_logging(level: str) -> None:
    """One line per event on stderr (journald adds the time), with the request id."""
    handler = logging.StreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s [%(request_id)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def json_response(payload: object, status: int = 200) -> Response:
    return Response(
        content=msgspec.json.encode(payload), status_code=status, media_type="application/json"
    )
