"""What the Responses translation costs the gateway per request and per stream event.

Run: .venv/bin/python tests/benchmarks/bench_responses_translation.py

Prints, best of several rounds (pure CPU, no HTTP):

- request: Codex's recorded request (``tests/gateway/responses/recorded``, 40 KB, nine
  tools) decoded, its items and tools read, translated to chat and encoded;
- response: a non-stream chat completion (reasoning, text, a tool call) projected and
  encoded as a Response;
- stream: a neuron stream (reasoning, text, a tool call, usage) fed as raw SSE bytes one
  chunk at a time, as the gateway feeds it: per upstream chunk and per event sent, and
  beside it the Anthropic translation of the same stream, measured in the same run.

No timing targets are asserted; the gateway's added-latency benchmark covers the
end-to-end budget, this isolates the translation share of it.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import msgspec

from cortex.common import responses as r
from cortex.services.gateway.anthropic import StreamTranslator
from cortex.services.gateway.responses import (
    ResponseStream,
    from_chat_completion,
    new_turn,
    to_chat_request,
)

RECORDED = Path(__file__).resolve().parents[1] / "gateway" / "responses" / "recorded"
ROUNDS = 7
_encoder = msgspec.json.Encoder()


def best(fn, repeat: int) -> float:
    """Best-of-ROUNDS seconds per call of ``fn``."""
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        times.append((time.perf_counter() - start) / repeat)
    return min(times)


def chunk_bytes(delta: dict | None, finish: str | None = None, usage: dict | None = None) -> bytes:
    body: dict = {
        "id": "chatcmpl-0123456789abcdef01234567",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": "demo-long",
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
    if usage is not None:
        body["usage"] = usage
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def stream_pieces(tokens: int) -> list[bytes]:
    """A neuron stream: reasoning, then text, one token per chunk, then a tool call."""
    pieces = [chunk_bytes({"role": "assistant", "content": ""})]
    pieces += [chunk_bytes({"reasoning_content": " think"}) for _ in range(tokens // 4)]
    pieces += [chunk_bytes({"content": " word"}) for _ in range(tokens)]
    call = {"index": 0, "id": "call_1", "type": "function"}
    call["function"] = {"name": "exec_command", "arguments": '{"cmd": "ls -la"}'}
    pieces.append(chunk_bytes({"tool_calls": [call]}))
    pieces.append(chunk_bytes({}, finish="tool_calls"))
    usage = {"prompt_tokens": 20509, "completion_tokens": tokens + tokens // 4 + 9}
    pieces.append(chunk_bytes(None, usage={**usage, "total_tokens": sum(usage.values())}))
    pieces.append(b"data: [DONE]\n\n")
    return pieces


def main() -> None:
    body = (RECORDED / "codex_0.171.0_exec_request.json").read_bytes()
    compact = _encoder.encode(msgspec.json.decode(body))

    def translate_request() -> bytes:
        req = msgspec.json.decode(compact, type=r.ResponsesRequest)
        turn = new_turn(req)
        return _encoder.encode(to_chat_request(req, turn.context, turn.functions, model="m"))

    request_s = best(translate_request, 200)
    req = msgspec.json.decode(compact, type=r.ResponsesRequest)
    completion = msgspec.convert(
        {
            "id": "chatcmpl-1",
            "created": 1,
            "model": "demo-long",
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "tool_calls",
                    "message": {
                        "role": "assistant",
                        "content": "I'll list the files.",
                        "reasoning_content": "The user wants the files listed.",
                        "tool_calls": [
                            {
                                "id": "call_1",
                                "type": "function",
                                "function": {"name": "exec_command", "arguments": '{"cmd":"ls"}'},
                            }
                        ],
                    },
                }
            ],
            "usage": {"prompt_tokens": 20509, "completion_tokens": 40, "total_tokens": 20549},
        },
        r.ChatCompletion,
    )
    turn = new_turn(req)
    response_s = best(lambda: _encoder.encode(from_chat_completion(completion, turn)), 2000)

    pieces = stream_pieces(1000)
    sent = {"events": 0}

    def run_responses() -> None:
        stream = ResponseStream(turn)
        out = b"".join(stream.feed_bytes(p) for p in pieces) + stream.finish()
        sent["events"] = out.count(b"\nevent: ") + 1

    def run_anthropic() -> None:
        translator = StreamTranslator(model="demo-long")
        for piece in pieces:
            translator.feed_bytes(piece)
        translator.finish()

    responses_s = best(run_responses, 3)
    anthropic_s = best(run_anthropic, 3)
    n, events = len(pieces), sent["events"]
    tools = len(req.tools or ())
    print(f"request  (Codex 0.171, {len(compact)} bytes, {tools} tools):", end=" ")
    print(f"decode+translate+encode {request_s * 1e6:8.1f} us")
    print(f"response (non-stream, 3 items): translate+encode {response_s * 1e6:8.1f} us")
    print(
        f"stream   ({n} upstream chunks -> {events} events): {responses_s * 1e3:6.2f} ms,", end=" "
    )
    print(
        f"{responses_s / n * 1e6:5.2f} us/chunk, {responses_s / events * 1e6:5.2f} us/event,",
        end=" ",
    )
    print(f"{n / responses_s:,.0f} chunks/s")
    per_chunk = anthropic_s / n * 1e6
    print(
        f"anthropic, same stream: {anthropic_s * 1e3:6.2f} ms, {per_chunk:5.2f} us/chunk;", end=" "
    )
    print(f"responses/anthropic {responses_s / anthropic_s:.2f}")


if __name__ == "__main__":
    main()
