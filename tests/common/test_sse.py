"""SSE encoding and the incremental decoder, under every chunking a socket can produce."""

from __future__ import annotations

import pytest

from cortex.common.sse import (
    DONE,
    PING,
    SSEDecoder,
    aiter_events,
    encode_event,
    encode_json,
    iter_events,
)

STREAM = (
    encode_json({"text": "héllo 🙂"}, "delta")
    + PING
    + encode_event("line one\nline two", event="multi", id="7")
    + b"retry: 1500\ndata: r\n\n"
    + DONE
)


def decode_in_pieces(data: bytes, size: int):
    decoder = SSEDecoder()
    events = []
    for start in range(0, len(data), size):
        events.extend(decoder.feed(data[start : start + size]))
    return events


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(STREAM)])
def test_any_chunking_gives_the_same_events(size):
    events = decode_in_pieces(STREAM, size)
    assert [(e.event, e.data) for e in events] == [
        ("delta", '{"text":"héllo 🙂"}'),
        ("multi", "line one\nline two"),
        ("message", "r"),
        ("message", "[DONE]"),
    ]
    assert events[1].id == "7"
    assert events[2].retry == 1500
    assert events[0].json() == {"text": "héllo 🙂"}


def test_crlf_and_cr_line_endings():
    data = b"event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\rdata: 3\n\n"
    for size in (1, 2, len(data)):
        events = decode_in_pieces(data, size)
        assert [(e.event, e.data) for e in events] == [("a", "1"), ("b", "2"), ("message", "3")]


def test_a_cr_at_the_end_of_a_chunk_waits_for_a_possible_lf():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\n") == []
    assert [e.data for e in decoder.feed(b"\r\n")] == ["x"]


def test_comments_and_field_without_space():
    events = list(iter_events([b": ping\n\n", b"data:no-space\n\n", b"event: only\n\n"]))
    assert [e.data for e in events] == ["no-space"]


def test_incomplete_event_is_not_emitted():
    assert decode_in_pieces(b"data: partial\n", 4) == []


async def test_async_iteration():
    async def chunks():
        for piece in (STREAM[:10], STREAM[10:]):
            yield piece

    events = [event async for event in aiter_events(chunks())]
    assert events[-1].data == "[DONE]"


def test_every_cut_into_two_chunks_gives_the_same_events():
    data = STREAM + b"event: b\rdata: 2\r\rdata: 3\r\n\r\n"
    whole = decode_in_pieces(data, len(data))
    assert len(whole) == 6
    for cut in range(1, len(data)):
        decoder = SSEDecoder()
        assert decoder.feed(data[:cut]) + decoder.feed(data[cut:]) == whole, cut


def test_a_held_cr_ends_its_line_when_anything_but_lf_follows():
    decoder = SSEDecoder()
    assert decoder.feed(b"data: x\r") == []
    assert decoder.feed(b"\r") == []
    assert [e.data for e in decoder.feed(b"d")] == ["x"]
