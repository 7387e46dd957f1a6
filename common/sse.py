"""Server-sent events: encoding for the servers, incremental decoding for the clients.

Shared by the neuron (OpenAI streams, its event stream), the gateway (proxying,
Anthropic streams, the fleet stream) and the console (reading the fleet stream).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass

import msgspec

PING = b": ping\n\n"
DONE = b"data: [DONE]\n\n"

_json_encoder = msgspec.json.Encoder()


def encode_event(data: bytes | str, event: str | None = None, id: str | None = None) -> bytes:
    """One SSE event. ``data`` may span lines; each line gets its own ``data:`` field."""
    if isinstance(data, str):
        data = data.encode()
    parts: list[bytes] = []
    if id is not None:
        parts.append(b"id: " + id.encode() + b"\n")
    if event is not None:
        parts.append(b"event: " + event.encode() + b"\n")
    for line in data.split(b"\n"):
        parts.append(b"data: " + line + b"\n")
    parts.append(b"\n")
    return b"".join(parts)


def encode_json(payload: object, event: str | None = None) -> bytes:
    """An SSE event whose data is ``payload`` encoded as compact JSON (one line)."""
    body = _json_encoder.encode(payload)
    if event is None:
        return b"data: " + body + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + body + b"\n\n"


def comment(text: str) -> bytes:
    return b": " + text.encode() + b"\n\n"


@dataclass(slots=True)
class ServerSentEvent:
    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None

    def json(self, type_: type | None = None):
        if type_ is None:
            return msgspec.json.decode(self.data)
        return msgspec.json.decode(self.data, type=type_)


class SSEDecoder:
    """Incremental decoder, per the WHATWG event-stream rules.

    Feed it bytes as they arrive (any chunking, including a split in the middle of a
    multi-byte character or between ``\\r`` and ``\\n``); it returns the events that
    are complete. Comments (``: ping``) are dropped.
    """

    def __init__(self) -> None:
        self._pending: list[bytes] = []  # the unfinished last line, in the pieces it came in
        self._data: list[str] = []
        self._event = ""
        self._id: str | None = None
        self._retry: int | None = None

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        # Linear in the bytes fed: each byte is joined and split once, however many
        # events a chunk holds and however many chunks a line spans.
        held_cr = bool(self._pending) and self._pending[-1].endswith(b"\r")
        if b"\n" not in chunk and b"\r" not in chunk and not held_cr:
            if chunk:
                self._pending.append(chunk)
            return []
        self._pending.append(chunk)
        lines = b"".join(self._pending).splitlines(keepends=True)
        self._pending.clear()
        if lines and not lines[-1].endswith(b"\n"):
            # unfinished, or ending in a \r whose \n may come in the next chunk
            self._pending.append(lines.pop())
        events: list[ServerSentEvent] = []
        for line in lines:
            event = self._process(line.rstrip(b"\r\n"))
            if event is not None:
                events.append(event)
        return events

    def _process(self, raw: bytes) -> ServerSentEvent | None:
        line = raw.decode("utf-8", errors="replace")
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerSentEvent(
                data="\n".join(self._data),
                event=self._event or "message",
                id=self._id,
                retry=self._retry,
            )
            self._data, self._event, self._retry = [], "", None
            return event
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            self._id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None


async def aiter_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    """Events from an async byte stream, e.g. ``httpx.Response.aiter_bytes()``."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event


def iter_events(chunks: Iterable[bytes]) -> Iterable[ServerSentEvent]:
    decoder = SSEDecoder()
    for chunk in chunks:
        yield from decoder.feed(chunk)
