"""Helpers for the translation tests: recorded Anthropic payloads, OpenAI chunk
sequences as a neuron streams them, and the official ``anthropic`` SDK reading our
output.

The recorded payloads under ``recorded/`` are written by hand from Anthropic's
documented examples (streaming, extended thinking, tool use, errors). The OpenAI chunk
sequences are test inputs in the shape the neuron's projector emits (role chunk first,
``finish_reason`` on the last content chunk, then a usage chunk, then ``[DONE]``).

To let the SDK read our bytes, its HTTP client gets an ``httpx2.MockTransport`` that
answers with them: the SDK's own SSE decoding, event validation and stream
accumulation then run on our output, unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import msgspec
from anthropic.types import Message as SDKMessage
from anthropic.types import RawMessageStreamEvent
from pydantic import TypeAdapter

from cortex.common.sse import ServerSentEvent, iter_events

RECORDED = Path(__file__).parent / "recorded"
SDK_EVENT = TypeAdapter(RawMessageStreamEvent)


def recorded_bytes(name: str) -> bytes:
    return (RECORDED / name).read_bytes()


def recorded_json(name: str) -> Any:
    return json.loads((RECORDED / name).read_text())


def sse_events(data: bytes) -> list[ServerSentEvent]:
    return list(iter_events([data]))


def event_payloads(data: bytes) -> list[dict[str, Any]]:
    """The JSON payloads of an Anthropic SSE stream, checking ``event:`` == ``type``."""
    payloads = []
    for event in sse_events(data):
        payload = json.loads(event.data)
        assert event.event == payload["type"], (event.event, payload)
        payloads.append(payload)
    return payloads


def shape(data: bytes) -> list[tuple]:
    """The structure of an Anthropic stream, without its text: event types, block
    indices and kinds, delta kinds. Pings and empty ``input_json_delta`` pieces (which
    Anthropic sends before a call's first argument) carry nothing and are left out."""
    out: list[tuple] = []
    for p in event_payloads(data):
        kind = p["type"]
        if kind == "ping":
            continue
        if kind == "content_block_start":
            out.append((kind, p["index"], p["content_block"]["type"]))
        elif kind == "content_block_delta":
            delta = p["delta"]
            if delta["type"] == "input_json_delta" and not delta["partial_json"]:
                continue
            out.append((kind, p["index"], delta["type"]))
        elif kind == "content_block_stop":
            out.append((kind, p["index"]))
        elif kind == "message_delta":
            out.append((kind, p["delta"]["stop_reason"]))
        else:
            out.append((kind,))
    return out


# --------------------------------------------------------------------------- OpenAI input


def chunk(
    delta: dict[str, Any] | None = None,
    *,
    finish: str | None = None,
    usage: dict[str, int] | None = None,
    no_choices: bool = False,
    **choice_extra: Any,
) -> dict[str, Any]:
    """One OpenAI chat completion chunk, as a neuron sends it."""
    body: dict[str, Any] = {
        "id": "chatcmpl-0123456789abcdef01234567",
        "object": "chat.completion.chunk",
        "created": 1760000000,
        "model": "demo-small",
        "choices": []
        if no_choices
        else [
            {
                "index": 0,
                "delta": delta or {},
                "finish_reason": finish,
                "logprobs": None,
                **choice_extra,
            }
        ],
    }
    if usage is not None:
        body["usage"] = {
            **usage,
            "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
        }
    return body


def usage_chunk(prompt: int, completion: int) -> dict[str, Any]:
    return chunk(no_choices=True, usage={"prompt_tokens": prompt, "completion_tokens": completion})


def tool_delta(
    index: int, arguments: str, *, id: str | None = None, name: str | None = None
) -> dict[str, Any]:
    call: dict[str, Any] = {"index": index, "function": {"arguments": arguments}}
    if id is not None:
        call.update(id=id, type="function")
        call["function"]["name"] = name
    return {"tool_calls": [call]}


def openai_sse(chunks: list[dict[str, Any]], *, done: bool = True) -> bytes:
    """The bytes a neuron sends for these chunks."""
    body = b"".join(b"data: " + msgspec.json.encode(c) + b"\n\n" for c in chunks)
    return body + (b"data: [DONE]\n\n" if done else b"")


# --------------------------------------------------------------------------- SDK side


def sdk_client(status: int, body: bytes, *, stream: bool) -> anthropic.Anthropic:
    """An SDK client whose every request is answered with ``body``."""
    content_type = "text/event-stream" if stream else "application/json"

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(status, headers={"content-type": content_type}, content=body)

    return anthropic.Anthropic(
        api_key="test",
        base_url="http://cortex.test",
        max_retries=0,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )


def sdk_stream_message(sse: bytes) -> SDKMessage:
    """The Message the official SDK accumulates from an Anthropic SSE stream."""
    client = sdk_client(200, sse, stream=True)
    with client.messages.stream(
        model="m", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        return stream.get_final_message()


def sdk_validate_events(sse: bytes) -> list[Any]:
    """Every event validated strictly by the SDK's pydantic models (errors excepted)."""
    return [
        SDK_EVENT.validate_python(p) for p in event_payloads(sse) if p["type"] not in ("error",)
    ]


def content_of(message: SDKMessage) -> list[dict[str, Any]]:
    """A message's content blocks as plain dicts, without the SDK's optional nulls."""
    return [
        {k: v for k, v in block.model_dump().items() if v is not None} for block in message.content
    ]
