"""Request plumbing shared by the OpenAI and Anthropic routes.

Reading the little of a body the gateway needs, resolving the model name, request ids,
the headers sent upstream, and running a non-stream request so that a client that
hangs up cancels it (and with it the upstream request, or its place in the queue).
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable
from typing import TypeVar

import msgspec
from litestar import Request
from litestar.background_tasks import BackgroundTask
from litestar.response import Stream

from cortex.common.errors import CortexError, invalid_body
from cortex.common.openai import unknown_request_fields
from cortex.services.gateway import access_log

T = TypeVar("T")

SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


def sse_response(stream, headers: dict[str, str]) -> Stream:
    """The event-stream response over a proxy ``OwnedStream``. Its ``aclose`` runs after
    the response however it went, also when the stream was never read (the client left
    before the first byte), so the request's lease is always given back."""
    return Stream(
        stream,
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **headers},
        background=BackgroundTask(stream.aclose),
    )


class RequestHead(msgspec.Struct):
    """The fields of an OpenAI request the gateway routes on; the rest passes untouched."""

    model: str
    stream: bool = False


_head_decoder = msgspec.json.Decoder(RequestHead)
_fields_decoder = msgspec.json.Decoder(dict[str, msgspec.Raw])


def parse_head(body: bytes, endpoint: str) -> RequestHead:
    """The routing fields of a chat or completions body; a 400 for a field OpenAI would
    refuse (e.g. an Anthropic-style top-level ``system``), which would otherwise be
    dropped silently."""
    if not body.strip():
        raise CortexError(400, "Request body is empty: send a JSON object.", code="invalid_request")
    try:
        head = _head_decoder.decode(body)
        unknown = unknown_request_fields(endpoint, _fields_decoder.decode(body))
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise invalid_body(exc) from None
    if unknown:
        hint = ""
        if unknown[0] == "system" and endpoint == "chat":
            hint = (
                ' The system prompt goes into `messages` as {"role": "system", "content": ...}'
                " here; a top-level `system` is the Anthropic dialect (POST /v1/messages)."
            )
        raise CortexError(
            400,
            f"Unrecognized request argument supplied: {unknown[0]}.{hint}",
            code="unknown_parameter",
            param=unknown[0],
        )
    return head


def replace_model(body: bytes, model: str) -> bytes:
    """The body with its ``model`` replaced (only when an alias was resolved)."""
    data = msgspec.json.decode(body)
    data["model"] = model
    return msgspec.json.encode(data)


def request_id(request: Request) -> str:
    """The client's ``x-request-id`` when usable, else a new one; the same for the whole
    request, so an error answered later (``errors.handle_exception``) carries it too."""
    rid = getattr(request.state, "request_id", None)
    if rid is None:
        given = request.headers.get("x-request-id", "").strip()
        usable = given and len(given) <= 128 and given.isprintable()
        rid = request.state.request_id = given if usable else f"req-{uuid.uuid4().hex[:20]}"
        access_log.note(request_id=rid)
    return rid


CLAMP_HEADER = "x-cortex-clamp-max-tokens"  # asks the neuron to lower max_tokens to fit
CLAMPED_HEADER = "x-cortex-max-tokens-clamped"  # the neuron's answer: the lowered value


def upstream_headers(request_id: str, stream: bool, clamp: bool = False) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        "accept": "text/event-stream" if stream else "application/json",
        "x-request-id": request_id,
    }
    if clamp:
        headers[CLAMP_HEADER] = "1"
    return headers


def resolve_model(gateway, name: str) -> str:
    """The model id behind a client's model name (aliases applied); 404 if the fleet lacks it."""
    scheduler = gateway.scheduler
    model = scheduler.resolve(name)
    access_log.note(model=model)
    if not scheduler.model_known(model):
        shown = name if model == name else f"{name}' (alias of '{model}"
        raise scheduler.unknown_model_error(shown, param="model")
    return model


class ClientGone(Exception):
    """The client disconnected before its answer was ready."""


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def unless_client_leaves(request: Request, work: Awaitable[T]) -> T:
    """Run ``work``; if the client hangs up first, cancel it and raise :class:`ClientGone`."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    raise ClientGone
