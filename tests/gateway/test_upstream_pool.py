"""The proxy's connection pool against a raw TCP server that misbehaves on purpose.

The server is a few lines of asyncio so each test can script exactly what a neuron does
on the wire: answer and keep the connection, read a request and hang up, answer bytes
that are not HTTP, or say nothing at all.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

import pytest

from cortex.services.gateway.upstream import (
    UpstreamBroken,
    UpstreamPool,
    UpstreamTimeout,
    UpstreamUnreachable,
)

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: application/json\r\n\r\n{}"
Behaviour = Callable[[int, asyncio.StreamWriter], Awaitable[bool]]


class ScriptedServer:
    """Counts the requests it receives; ``behaviour(n, writer)`` answers the n-th one
    (from 1) and returns whether to keep the connection open for another."""

    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.requests = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> ScriptedServer:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                await reader.readexactly(length)
                self.requests += 1
                if not await self.behaviour(self.requests, writer):
                    break
        writer.close()


def pool_for(server: ScriptedServer, read_timeout: float = 5.0) -> UpstreamPool:
    return UpstreamPool("127.0.0.1", server.port, connect_timeout=2.0, read_timeout=read_timeout)


async def test_a_written_request_is_never_sent_again():
    """The second request is read by the neuron, which then hangs up without answering:
    it may be running there, so the pool must not send it again on a fresh connection."""

    async def behaviour(n: int, writer: asyncio.StreamWriter) -> bool:
        if n == 1:
            writer.write(OK)
            await writer.drain()
            return True
        if n == 2:
            return False  # read it, then close without a word
        writer.write(OK)
        await writer.drain()
        return True

    async with ScriptedServer(behaviour) as server:
        pool = pool_for(server)
        first = await pool.request("POST", "/v1/chat/completions", {}, b"{}")
        assert await first.aread() == b"{}"
        await first.aclose()
        with pytest.raises(UpstreamUnreachable):
            await pool.request("POST", "/v1/chat/completions", {}, b"{}")
        assert server.requests == 2
        pool.close()


async def test_an_idle_connection_the_neuron_closed_is_not_used():
    """Closed by the neuron while idle: detected before writing, so the request goes out
    once, on a fresh connection, and succeeds."""

    async def behaviour(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(OK)
        await writer.drain()
        return n != 1  # the first connection is closed after its answer

    async with ScriptedServer(behaviour) as server:
        pool = pool_for(server)
        first = await pool.request("POST", "/x", {}, b"{}")
        await first.aread()
        await first.aclose()
        await asyncio.sleep(0.1)  # the close reaches the pool while the connection idles
        second = await pool.request("POST", "/x", {}, b"{}")
        assert await second.aread() == b"{}"
        await second.aclose()
        assert server.requests == 2
        pool.close()


async def _garbage(n: int, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()
    return True


async def _silent(n: int, writer: asyncio.StreamWriter) -> bool:
    await asyncio.sleep(30)
    return False


async def _drop_mid_body(n: int, writer: asyncio.StreamWriter) -> bool:
    writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhel")
    await writer.drain()
    return False


@pytest.mark.parametrize(
    ("behaviour", "error"),
    [(_garbage, UpstreamBroken), (_silent, UpstreamTimeout)],
    ids=["malformed-head", "head-timeout"],
)
async def test_a_connection_closed_before_the_head_leaves_the_busy_set(behaviour, error):
    async with ScriptedServer(behaviour) as server:
        pool = pool_for(server, read_timeout=0.3)
        for _ in range(3):
            with pytest.raises(error):
                await pool.request("POST", "/x", {}, b"{}")
        assert pool._busy == set()
        pool.close()


async def test_a_connection_lost_mid_body_leaves_the_busy_set():
    async with ScriptedServer(_drop_mid_body) as server:
        pool = pool_for(server)
        response = await pool.request("POST", "/x", {}, b"{}")
        with pytest.raises(UpstreamBroken):
            await response.aread()
        await response.aclose()
        assert pool._busy == set()
        pool.close()


async def test_the_watchdog_fails_a_silent_body_and_frees_its_connection():
    async def stall_after_head(n: int, writer: asyncio.StreamWriter) -> bool:
        writer.write(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(30)
        return False

    async with ScriptedServer(stall_after_head) as server:
        pool = pool_for(server, read_timeout=0.4)
        response = await pool.request("POST", "/x", {}, b"{}")
        with pytest.raises(UpstreamTimeout):
            await asyncio.wait_for(response.aread(), 5)
        assert pool._busy == set()
        pool.close()
