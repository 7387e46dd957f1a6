"""One blocking HTTP/1.1 request at a time, on a plain socket: the ``--json`` path's wire.

Why not httpx here (the TUI uses it): a script call makes one or two requests and
exits, and importing httpx (httpcore, h11, anyio, idna, certifi) was the largest part of
``cortex-console --json status``'s wall time. Why not ``http.client`` either: it imports
the ``email`` package (its header parser) and ``ssl`` on every start, another 15 ms of a
~100 ms call. This speaks the part of HTTP/1.1 a JSON API needs: a request with a
``Content-Length`` body; an answer framed by ``Content-Length``, chunked, or the end of
the connection. The connection stays open for a second request (an action after a
query); ``ssl`` is imported only when the URL says https.
"""

from __future__ import annotations

import socket
from typing import BinaryIO
from urllib.parse import urlencode, urlsplit

MAX_LINE = 65536  # longest status or header line taken
MAX_HEADERS = 100
NO_BODY = (204, 304)


class TransportError(Exception):
    """Nothing usable came back; ``kind`` is "connect", "timeout" or "broken"."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


class Reply:
    __slots__ = ("content", "path", "reason_phrase", "status_code")

    def __init__(self, status_code: int, reason_phrase: str, content: bytes, path: str) -> None:
        self.status_code = status_code
        self.reason_phrase = reason_phrase
        self.content = content
        self.path = path

    @property
    def is_error(self) -> bool:
        return self.status_code >= 400

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _Broken(Exception):
    """The answer broke off or is not HTTP (the reason is the message)."""


class Transport:
    def __init__(self, base_url: str, headers: dict[str, str], timeout: float) -> None:
        parts = urlsplit(base_url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = self._port == (443 if self._https else 80)
        self._host_header = host if default_port else f"{host}:{self._port}"
        self._headers = headers
        self._timeout = timeout
        self._socket: socket.socket | None = None
        self._reader: BinaryIO | None = None

    def _connect(self) -> socket.socket:
        if self._socket is None:
            # An ASCII name goes as bytes (getaddrinfo takes them; typeshed says str): a
            # str is IDNA-encoded, which imports that codec on every start.
            host = self._host.encode() if self._host.isascii() else self._host
            sock = socket.create_connection((host, self._port), self._timeout)  # type: ignore[arg-type]
            try:
                if self._https:
                    import ssl

                    context = ssl.create_default_context()
                    sock = context.wrap_socket(sock, server_hostname=self._host)
            except BaseException:
                sock.close()
                raise
            self._socket = sock
            self._reader = sock.makefile("rb")
        return self._socket

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
        try:
            try:
                sock = self._connect()
            except OSError as exc:  # refused, unknown host, unreachable, timed out
                if isinstance(exc, TimeoutError):
                    raise TransportError("timeout", "timed out connecting") from None
                raise TransportError("connect", _reason(exc)) from None
            sock.sendall(self._head(method, target, content, headers) + (content or b""))
            status, reason, body, keep = self._answer(method, self._reader)
        except TransportError:
            self.close()
            raise
        except TimeoutError:
            self.close()
            raise TransportError("timeout", f"no answer within {self._timeout:g} s") from None
        except (_Broken, OSError) as exc:
            self.close()
            raise TransportError("broken", _reason(exc)) from None
        if not keep:
            self.close()
        return Reply(status, reason, body, path)

    def _head(
        self, method: str, target: str, content: bytes | None, extra: dict[str, str] | None
    ) -> bytes:
        fields = {"host": self._host_header, "accept-encoding": "identity"}
        if content is not None or method in ("POST", "PUT", "PATCH"):
            fields["content-length"] = str(len(content or b""))
        fields.update(self._headers)
        fields.update(extra or {})
        lines = [f"{method} {target} HTTP/1.1", *(f"{k}: {v}" for k, v in fields.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _answer(self, method: str, reader: BinaryIO | None) -> tuple[int, str, bytes, bool]:
        """Status, reason, body, and whether the connection may carry another request."""
        assert reader is not None  # made with the socket
        answer = _Answer(reader)
        while True:
            status, reason, version = answer.status_line()
            fields = answer.fields()
            if not 100 <= status < 200:
                break  # an interim 1xx answer is followed by the real one
        keep = version == "HTTP/1.1" and "close" not in fields.get("connection", "").lower()
        if method == "HEAD" or status in NO_BODY:
            return status, reason, b"", keep
        if "chunked" in fields.get("transfer-encoding", "").lower():
            return status, reason, answer.chunked(), keep
        length = fields.get("content-length")
        if length is not None:
            if not length.strip().isdigit():
                raise _Broken(f"bad Content-Length {length!r}")
            return status, reason, answer.exactly(int(length)), keep
        return status, reason, reader.read(), False  # until the server closes

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._socket is not None:
            self._socket.close()
            self._socket = None


class _Answer:
    """Reads one answer's parts off the connection."""

    def __init__(self, reader: BinaryIO) -> None:
        self._reader = reader

    def _line(self) -> bytes:
        line = self._reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise _Broken("a header line is too long")
        return line

    def status_line(self) -> tuple[int, str, str]:
        line = self._line()
        if not line:
            raise _Broken("Remote end closed connection without response")
        version, _, rest = line.decode("latin-1").rstrip("\r\n").partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
            raise _Broken(f"not an HTTP answer: {line[:80]!r}")
        return int(code), reason.strip(), version

    def fields(self) -> dict[str, str]:
        fields: dict[str, str] = {}
        for _ in range(MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                return fields
            name, _, value = line.decode("latin-1").partition(":")
            fields[name.strip().lower()] = value.strip()
        raise _Broken(f"more than {MAX_HEADERS} headers")

    def exactly(self, count: int) -> bytes:
        data = self._reader.read(count)
        if len(data) < count:
            missing = count - len(data)
            raise _Broken(f"IncompleteRead({len(data)} bytes read, {missing} more expected)")
        return data

    def chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            size_text = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise _Broken(f"bad chunk size {size_text[:20]!r}") from None
            if size == 0:
                self.fields()  # trailers, up to the blank line
                return b"".join(parts)
            parts.append(self.exactly(size))
            self.exactly(2)  # the CRLF after the chunk


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return f"[Errno {exc.errno}] {exc.strerror}"
    return str(exc) or type(exc).__name__
