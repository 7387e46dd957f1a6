"""What the Anthropic translation costs the gateway per request and per streamed chunk.

Run: .venv/bin/python tests/gateway/anthropic/bench_anthropic_translation.py

Prints the cost of translating a Claude Code-sized request, a non-stream response, and
a stream (per upstream chunk, as raw SSE bytes the way the gateway feeds them), best of
several rounds. No timing targets are asserted: the gateway's added-latency benchmark
covers the end-to-end budget; this isolates the translation share of it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec

from cortex.common import anthropic as a
from cortex.common import openai as o
from cortex.services.gateway.anthropic import (
    StreamTranslator,
    from_openai_response,
    to_openai_request,
)

RECORDED = Path(__file__).parent / "recorded"
ROUNDS = 7


def best(fn, repeat: int) -> float:
    """Best-of-ROUNDS seconds per call of ``fn``."""
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - start) / repeat)
    return min(times)


def chunk_bytes(delta: dict, finish: str | None = None) -> bytes:
    body = {
        "id": "chatcmpl-0123456789abcdef01234567",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": "demo-small",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def stream_pieces(tokens: int) -> list[bytes]:
    """A neuron stream: reasoning, then text, one token per chunk, then a tool call."""
    pieces = [chunk_bytes({"role": "assistant", "content": ""})]
    pieces += [chunk_bytes({"reasoning_content": " think"}) for _ in range(tokens // 4)]
    pieces += [chunk_bytes({"content": " word"}) for _ in range(tokens)]
    call = {"index": 0, "id": "call_1", "type": "function"}
    call["function"] = {"name": "Read", "arguments": '{"file_path": "/src/main.c"}'}
    pieces.append(chunk_bytes({"tool_calls": [call]}))
    pieces.append(chunk_bytes({}, "tool_calls"))
    usage = {"prompt_tokens": 1800, "completion_tokens": tokens, "total_tokens": 1800 + tokens}
    pieces.append(
        b"data: "
        + json.dumps(
            {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
            | {"choices": [], "usage": usage}
        ).encode()
        + b"\n\n"
    )
    pieces.append(b"data: [DONE]\n\n")
    return pieces


def main() -> None:
    body = json.loads((RECORDED / "claude_code_request.json").read_text())
    raw = json.dumps(body).encode()
    req = msgspec.json.decode(raw, type=a.MessagesRequest)
    encoder = msgspec.json.Encoder()

    def request_path() -> None:
        encoder.encode(to_openai_request(msgspec.json.decode(raw, type=a.MessagesRequest)))

    completion = msgspec.convert(
        {
            "id": "c",
            "created": 1,
            "model": "demo-small",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "word " * 200,
                        "reasoning_content": "think " * 50,
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "Read", "arguments": '{"file_path": "x"}'},
                            }
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 1800, "completion_tokens": 260, "total_tokens": 2060},
        },
        o.ChatCompletion,
    )

    def response_path() -> None:
        encoder.encode(from_openai_response(completion, req, model="claude-x"))

    tokens = 1000
    pieces = stream_pieces(tokens)

    def stream_path() -> None:
        translator = StreamTranslator(req, model="claude-x")
        for piece in pieces:
            translator.feed_bytes(piece)
        translator.finish()

    per_request = best(request_path, 300)
    per_response = best(response_path, 2000)
    per_stream = best(stream_path, 5)
    print(f"request  (Claude Code-sized, {len(raw)} bytes): decode+translate+encode "
          f"{per_request * 1e6:8.1f} us")  # fmt: skip
    print(f"response (non-stream, 3 blocks):                 translate+encode "
          f"{per_response * 1e6:8.1f} us")  # fmt: skip
    print(f"stream   ({len(pieces)} upstream chunks):              "
          f"{per_stream * 1e3:8.2f} ms total, {per_stream / len(pieces) * 1e6:6.2f} us/chunk, "
          f"{len(pieces) / per_stream:,.0f} chunks/s")  # fmt: skip


if __name__ == "__main__":
    main()
