"""The proxy's HTTP/1.1 client to a neuron: keep-alive connections, httptools parsing.

Why not httpx here (it serves every control call): streaming the same completions,
httpx costs about 7x the CPU of this client (4.9 vs 0.6 ms a 32-chunk stream; run
``tests/benchmarks/bench_upstream_client.py``, figures in BENCHMARKS.md), each relayed
chunk passing through about eight layers of async generators. The proxy path only ever
sends one POST with a bytes body to a uvicorn server and reads a content-length or
chunked answer, so this module does just that: an :class:`asyncio.Protocol` per
connection, llhttp (via httptools, the parser uvicorn uses) to de-chunk the body, and a
LIFO stack of idle connections per neuron.

Behaviour the proxy relies on:

* connect timeout short, read timeout long (a cold load or a long prefill is silent);
* a connection the neuron closed while idle is detected before reuse and dropped, so the
  request goes out on a fresh connection; once a request has been written it is never
  sent again by the pool (an inference request is not idempotent: it may have reached
  the neuron), whatever happens next;
* failing to connect, or the neuron dropping the connection before the response head,
  raises :class:`UpstreamUnreachable` (retry on another neuron);
* losing the connection mid-body raises :class:`UpstreamBroken`;
* closing a response before its body is complete closes the connection, which is how
  the neuron learns that the client left;
* a client that reads slowly pauses reading from the neuron (back-pressure) instead of
  buffering without bound.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections import deque
from collections.abc import AsyncIterator

import httptools

PAUSE_ABOVE = 1 << 20  # buffered body bytes before the neuron's socket is paused


class UpstreamError(Exception):
    pass


class UpstreamUnreachable(UpstreamError):
    """Nothing was answered: connecting failed, or the connection dropped before the head."""


class UpstreamBroken(UpstreamError):
    """The connection was lost (or the answer was malformed) in the middle of the body."""


class UpstreamTimeout(UpstreamError):
    pass


class UpstreamResponse:
    """A response whose head has arrived; iterate it for the (de-chunked) body."""

    def __init__(self, connection: _Connection) -> None:
        self._connection = connection
        self.status_code = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self._waiter: asyncio.Future | None = None
        self._head: asyncio.Future = asyncio.get_running_loop().create_future()
        self.complete = False
        self._error: UpstreamError | None = None
        self._closed = False
        self.waiting_since: float | None = None

    # ---------------------------------------------------------------- fed by the protocol

    def _push(self, piece: bytes) -> None:
        self._pieces.append(piece)
        self._buffered += len(piece)
        if self._buffered > PAUSE_ABOVE:
            self._connection.pause()
        self._wake()

    def _finish(self) -> None:
        self.complete = True
        self._wake()

    def _fail(self, error: UpstreamError) -> None:
        if self.complete:
            return
        self._error = error
        if not self._head.done():
            self._head.set_exception(error)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    # ---------------------------------------------------------------- read by the proxy

    def header(self, name: bytes) -> bytes | None:
        return next((v for k, v in self.headers if k == name), None)

    async def aiter_raw(self) -> AsyncIterator[bytes]:
        """Body bytes as they arrive; pieces that arrived together come as one."""
        while True:
            if self._pieces:
                if len(self._pieces) == 1:
                    data = self._pieces.popleft()
                else:
                    data = b"".join(self._pieces)
                    self._pieces.clear()
                self._buffered = 0
                self._connection.resume()
                yield data
                continue
            if self.complete:
                return
            if self._error is not None:
                raise self._error
            # No timer per wait: the pool's watchdog fails a response whose neuron has
            # been silent for longer than the read timeout.
            self._waiter = asyncio.get_running_loop().create_future()
            self.waiting_since = time.monotonic()
            try:
                await self._waiter
            finally:
                self._waiter = None
                self.waiting_since = None

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_raw()])

    def close(self) -> None:
        """Done with it; closing before the body is complete drops the connection (which
        is how the neuron learns that the client left). Never waits, so it is safe while
        the caller is being cancelled."""
        if self._closed:
            return
        self._closed = True
        self._connection.release(reusable=self.complete and self._error is None)

    async def aclose(self) -> None:
        self.close()


class _Connection(asyncio.Protocol):
    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpResponseParser | None = None
        self.response: UpstreamResponse | None = None
        self.lost = False
        self.keep_alive = True
        self.idle_since = time.monotonic()
        self._paused = False

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.parser is None:  # bytes while idle: the server is not speaking our protocol
            self.close()
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(UpstreamBroken(f"the neuron's answer is not valid HTTP ({exc})"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        response = self.response
        if response is None or response.complete:
            return
        if not response._head.done():
            self._fail(UpstreamUnreachable("the neuron closed the connection before answering"))
        elif (
            response.header(b"content-length") is None
            and response.header(b"transfer-encoding") is None
        ):
            response._finish()  # a body delimited by the end of the connection
        else:
            detail = f": {exc}" if exc else ""
            self._fail(UpstreamBroken(f"the neuron dropped the connection mid-answer{detail}"))

    def eof_received(self) -> bool | None:
        return None  # close the transport; connection_lost reports what is pending

    # ---------------------------------------------------------------- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        assert self.response is not None
        self.response.headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None and self.parser is not None
        response.status_code = self.parser.get_status_code()
        self.keep_alive = self.parser.should_keep_alive()
        if not response._head.done():
            response._head.set_result(None)

    def on_body(self, body: bytes) -> None:
        assert self.response is not None
        self.response._push(body)

    def on_message_complete(self) -> None:
        assert self.response is not None
        self.response._finish()

    # ---------------------------------------------------------------- helpers

    def _fail(self, error: UpstreamError) -> None:
        if self.response is not None:
            self.response._fail(error)

    def pause(self) -> None:
        if not self._paused and self.transport is not None and not self.lost:
            self._paused = True
            self.transport.pause_reading()

    def resume(self) -> None:
        if self._paused and self.transport is not None and not self.lost:
            self._paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        if self.transport is not None and not self.lost:
            self.transport.close()
        self.lost = True
        self.pool._busy.discard(self)

    @property
    def usable(self) -> bool:
        return not self.lost and self.keep_alive and self.transport is not None

    def start(self, request: bytes) -> UpstreamResponse:
        assert self.transport is not None
        self.response = UpstreamResponse(self)
        self.parser = httptools.HttpResponseParser(self)
        self.resume()
        self.transport.write(request)
        return self.response

    def release(self, reusable: bool) -> None:
        self.response = None
        self.parser = None
        if reusable and self.usable:
            self.idle_since = time.monotonic()
            self.pool._give_back(self)
        else:
            self.close()


class UpstreamPool:
    """Keep-alive connections to one neuron, most recently used first."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        connect_timeout: float,
        read_timeout: float,
        keepalive_expiry: float = 60.0,
        max_idle: int = 512,
        tls: bool = False,
    ) -> None:
        self.host, self.port = host, port
        self.tls = ssl.create_default_context() if tls else None
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.keepalive_expiry = keepalive_expiry
        self.max_idle = max_idle
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._host_header = f"{host}:{port}".encode()
        self._watchdog: asyncio.Task | None = None

    def _give_back(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        if len(self._idle) < self.max_idle:
            self._idle.append(connection)
        else:
            connection.close()

    def _take(self) -> _Connection | None:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()
            if connection.usable and now - connection.idle_since < self.keepalive_expiry:
                return connection
            connection.close()
        return None

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.connect_timeout):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(self),
                    self.host,
                    self.port,
                    ssl=self.tls,
                    server_hostname=self.host if self.tls else None,
                )
        except TimeoutError:
            raise UpstreamUnreachable(
                f"no connection within {self.connect_timeout:g}s (gateway.connect_timeout_s)"
            ) from None
        except OSError as exc:
            raise UpstreamUnreachable(exc.strerror or str(exc)) from None
        return protocol

    def _encode(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        lines = [f"{method} {path} HTTP/1.1".encode(), b"host: " + self._host_header]
        lines.extend(f"{name}: {value}".encode() for name, value in headers.items())
        lines.append(b"content-length: " + str(len(body)).encode())
        return b"\r\n".join(lines) + b"\r\n\r\n" + body

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> UpstreamResponse:
        """Send the request; return once the response head has arrived."""
        data = self._encode(method, path, headers, body)
        if self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(self._watch())
        connection = self._take() or await self._connect()
        response = connection.start(data)
        self._busy.add(connection)
        try:
            async with asyncio.timeout(self.read_timeout):
                await response._head
        except TimeoutError:
            connection.close()
            raise UpstreamTimeout(
                f"no answer from the neuron within {self.read_timeout:.0f}s "
                "(gateway.read_timeout_s)"
            ) from None
        except BaseException:
            connection.close()
            raise
        return response

    async def _watch(self) -> None:
        interval = min(5.0, self.read_timeout / 4)
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for connection in list(self._busy):
                response = connection.response
                if response is None or response.waiting_since is None:
                    continue
                if now - response.waiting_since > self.read_timeout:
                    response._fail(
                        UpstreamTimeout(f"no data from the neuron for {self.read_timeout:.0f}s")
                    )
                    connection.close()

    def abort(self, reason: str) -> None:
        """Fail every request in progress: one still waiting for its head as unreachable
        (nothing was answered: the proxy may retry it elsewhere), one mid-body as broken.
        Their connections close, so the neuron cancels them if it ever reads again."""
        for connection in list(self._busy):
            response = connection.response
            if response is not None:
                pending = not response._head.done()
                response._fail(UpstreamUnreachable(reason) if pending else UpstreamBroken(reason))
            connection.close()

    def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
        idle, self._idle = self._idle, []
        for connection in idle + list(self._busy):
            connection.close()
