"""One blocking HTTP request at a time, on the standard library: the ``--json`` path's wire.

Why not httpx here (the TUI uses it): a script call makes one or two requests and
exits, and importing httpx (httpcore, h11, anyio, idna, certifi) was the largest part of
``cortex-console --json status``'s wall time. ``http.client`` keeps the connection for
a second request (an action after a query) and does TLS when the URL says https.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit


class TransportError(Exception):
    """Nothing usable came back; ``kind`` is "connect", "timeout" or "broken"."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reply:
    status_code: int
    reason_phrase: str
    content: bytes
    path: str

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class Transport:
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._headers = headers
        self._timeout = timeout
        self._connection: http.client.HTTPConnection | None = None

    def _connect(self) -> http.client.HTTPConnection:
        if self._connection is None:
            if self._https:
                self._connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout
                )
            else:
                self._connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
        return self._connection

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        content: bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Reply:
        target = self._prefix + path + (f"?{urlencode(params)}" if params else "")
        connection = self._connect()
        try:
            try:
                connection.request(method, target, content, {**self._headers, **(headers or {})})
            except OSError as exc:  # refused, unknown host, unreachable, timed out
                if isinstance(exc, TimeoutError):
                    raise TransportError("timeout", "timed out connecting") from None
                raise TransportError("connect", _reason(exc)) from None
            response = connection.getresponse()
            body = response.read()
        except TransportError:
            self.close()
            raise
        except TimeoutError:
            self.close()
            raise TransportError("timeout", f"no answer within {self._timeout:g} s") from None
        except (http.client.HTTPException, OSError) as exc:
            self.close()
            raise TransportError("broken", _reason(exc)) from None
        return Reply(response.status, response.reason, body, path)

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return str(exc) or type(exc).__name__
