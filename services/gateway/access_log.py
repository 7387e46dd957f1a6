"""One log line for every request the gateway answers, at the default level.

An ASGI middleware around the whole app writes the line when the answer is over:
method, path, status, request id, model, neuron, duration, and for a 4xx/5xx its
reason; proxied requests add what :class:`~cortex.services.gateway.proxy.Meter`
measured (tokens, TTFT). The status is the one the client really got: a stream that
answered 200 and then failed says 502, a client that left before the end 499.

The routes fill the line through :func:`note` (a context variable holds the request's
:class:`RequestLine`), so rejections (validation 400s, 404s, 413s) and count_tokens are
logged like everything else. uvicorn's own access log stays off.
"""

from __future__ import annotations

import logging
import time
from contextvars import ContextVar
from dataclasses import dataclass

log = logging.getLogger("cortex.gateway.request")

_MAX_REASON = 300


@dataclass
class RequestLine:
    method: str
    path: str
    started: float
    request_id: str = ""
    model: str = ""
    neuron: str = ""
    status: int | None = None  # when the route knows better than the HTTP status
    measured: str = ""  # the meter's figures
    reason: str = ""
    written: bool = False

    def text(self, http_status: int) -> str:
        status = self.status if self.status is not None else http_status
        parts = [
            f"request {self.request_id or '-'} {self.method} {self.path} status={status}",
            f"model={self.model or '-'} neuron={self.neuron or '-'}",
        ]
        if self.measured:
            parts.append(self.measured)
        parts.append(f"total_ms={(time.perf_counter() - self.started) * 1000:.1f}")
        if status >= 400 and self.reason:
            reason = self.reason.replace("\n", " ")
            if len(reason) > _MAX_REASON:
                reason = reason[:_MAX_REASON] + "..."
            parts.append(f"reason={reason!r}")
        return " ".join(parts)


_current: ContextVar[RequestLine | None] = ContextVar("cortex_gateway_request", default=None)


def note(**fields) -> None:
    """Add to the current request's line (no-op outside a request)."""
    line = _current.get()
    if line is not None:
        for name, value in fields.items():
            setattr(line, name, value)


def measured(*, model: str, neuron: str, status: int, figures: str, request_id: str = "") -> None:
    """The meter's report: the line's status and figures, or its own line when the
    request's line was already written (a stream closed late) or there is none."""
    line = _current.get()
    if line is None or line.written:
        log.info(
            "request %s status=%d model=%s neuron=%s %s",
            request_id or "-",
            status,
            model,
            neuron or "-",
            figures,
        )
        return
    line.model, line.neuron, line.status, line.measured = model, neuron, status, figures


def middleware(app):
    """Wrap an ASGI app so that every HTTP request is one log line."""

    async def logged(scope, receive, send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        line = RequestLine(scope["method"], _path(scope), time.perf_counter())
        token = _current.set(line)
        status = 500

        async def sending(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                if not line.request_id:
                    line.request_id = _header(message.get("headers"), b"x-request-id")
            await send(message)

        try:
            await app(scope, receive, sending)
        finally:
            _current.reset(token)
            if not line.request_id:
                line.request_id = _header(scope.get("headers"), b"x-request-id")
            line.written = True
            log.info("%s", line.text(status))

    return logged


def _path(scope) -> str:
    query = scope.get("query_string") or b""
    path = scope.get("path", "")
    return f"{path}?{query.decode('latin-1')}" if query else path


def _header(headers, name: bytes) -> str:
    for key, value in headers or ():
        if key.lower() == name:
            return value.decode("latin-1")
    return ""
