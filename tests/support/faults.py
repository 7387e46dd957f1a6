"""A TCP proxy that misbehaves on purpose, between a real gateway and a real neuron.

    with FaultProxy(neuron.port) as proxy:            # listens on proxy.port
        ... gateway configured with proxy.url for the neuron ...
        proxy.arm("truncate", after=300)              # the next inference connection
        ...

Only connections whose first request is an inference call (``POST /v1/...``) are
touched, so the gateway's health checks and event stream pass through unchanged and the
neuron stays "up" while its answers go wrong. ``arm`` closes the (idle) inference
connections the gateway keeps alive, so its next inference request opens a new one; the
fault applies to that connection only (then the proxy passes bytes through again):

* ``malformed``: the request is swallowed and bytes that are not HTTP come back;
* ``truncate``: the answer is cut after ``after`` bytes (mid-chunk) and the connection
  closed cleanly;
* ``reset``: the same, but with a TCP reset;
* ``stall``: the request reaches the neuron, nothing of its answer comes back;
* ``delay``: each piece of the answer is held ``seconds`` first.

The proxy runs its own event loop in a thread, so it works under synchronous tests.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
import time
from dataclasses import dataclass


@dataclass
class Fault:
    kind: str
    after: int = 0
    seconds: float = 0.0


class FaultProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self._armed: Fault | None = None
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._inference: set[asyncio.StreamWriter] = set()  # client sides of POST /v1/...
        self.applied: list[str] = []  # the faults that took effect, in order

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", 0), self._loop
        ).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for writer in list(self._writers):
                writer.close()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def arm(self, kind: str, *, after: int = 0, seconds: float = 0.0) -> None:
        assert kind in ("malformed", "truncate", "reset", "stall", "delay"), kind
        with self._lock:
            self._armed = Fault(kind, after, seconds)

        async def drop_idle() -> None:
            for writer in list(self._inference):
                writer.close()

        asyncio.run_coroutine_threadsafe(drop_idle(), self._loop).result(10)
        time.sleep(0.3)  # the gateway sees them closed before its next request

    def _take_fault(self, first: bytes) -> Fault | None:
        if not first.startswith(b"POST /v1/"):
            return None
        with self._lock:
            fault, self._armed = self._armed, None
        if fault is not None:
            self.applied.append(fault.kind)
        return fault

    # ------------------------------------------------------------------ relaying

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            first = await reader.read(1 << 16)
            if not first:
                return
            fault = self._take_fault(first)
            if first.startswith(b"POST /v1/"):
                self._inference.add(writer)
            if fault is not None and fault.kind == "malformed":
                writer.write(b"SSH-2.0-OpenSSH_9.6 not http\r\n\r\n")
                await writer.drain()
                return
            upstream_reader, upstream_writer = await asyncio.open_connection(*self.upstream)
            self._writers.add(upstream_writer)
            upstream_writer.write(first)
            await asyncio.gather(
                self._pipe(reader, upstream_writer, None),
                self._pipe(upstream_reader, writer, fault),
            )
        except (ConnectionError, OSError):
            pass
        finally:
            self._inference.discard(writer)
            for w in (writer, upstream_writer):
                if w is not None:
                    self._writers.discard(w)
                    with contextlib.suppress(Exception):
                        w.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, fault: Fault | None
    ) -> None:
        sent = 0
        try:
            while data := await reader.read(1 << 16):
                if fault is None:
                    writer.write(data)
                elif fault.kind == "stall":
                    continue  # read and dropped: the client hears nothing
                elif fault.kind == "delay":
                    await asyncio.sleep(fault.seconds)
                    writer.write(data)
                else:  # truncate / reset
                    room = fault.after - sent
                    writer.write(data[:room])
                    sent += min(room, len(data))
                    if sent >= fault.after:
                        await writer.drain()
                        if fault.kind == "reset":
                            _reset(writer)
                        break
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with RST instead of FIN (SO_LINGER with a zero timeout)."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
