"""OpenAI routes: ``POST /v1/chat/completions``, ``POST /v1/completions``.

Bodies go upstream as the client sent them (only ``model`` is rewritten when an alias
was used) and answers come back byte for byte. A stream whose model is loaded answers
with the neuron's status and headers; a stream that must wait for a load answers 200 at
once and sends ``: ping`` comments until the first byte, so proxies and clients do not
drop it, and reports any later failure as an error event.
"""

from __future__ import annotations

import time

from litestar import Request, Response, post

from cortex.common.errors import CortexError, openai_error_body
from cortex.common.sse import DONE, PING
from cortex.services.gateway import affinity
from cortex.services.gateway.auth import require_client
from cortex.services.gateway.plumbing import (
    ClientGone,
    parse_head,
    replace_model,
    request_id,
    resolve_model,
    sse_response,
    upstream_headers,
)
from cortex.services.gateway.proxy import (
    Exchange,
    Meter,
    StreamDialect,
    admit,
    fetch_whole,
    open_stream,
    relay,
)


def openai_error_event(error: CortexError) -> bytes:
    """The error event that ends an OpenAI stream, then ``[DONE]``, as the neuron ends one."""
    return b"data: " + openai_error_body(error) + b"\n\n" + DONE


@post("/v1/chat/completions", status_code=200)
async def chat_completions(request: Request) -> Response:
    return await forward(request, "/v1/chat/completions", "chat")


@post("/v1/completions", status_code=200)
async def completions(request: Request) -> Response:
    return await forward(request, "/v1/completions", "completions")


async def forward(request: Request, path: str, endpoint: str) -> Response:
    started = time.perf_counter()
    require_client(request)
    gateway = request.app.state.gateway
    rid = request_id(request)
    body = await request.body()
    head = parse_head(body, endpoint)
    model = resolve_model(gateway, head.model)
    if model != head.model:
        body = replace_model(body, model)
    meter = Meter(gateway, model, endpoint, started, rid)
    headers = upstream_headers(rid, head.stream, gateway.settings.clamps_max_tokens(model))
    reply_headers = {"x-request-id": rid}
    exchange = Exchange(path, body, headers, meter)
    prefix = affinity.from_openai(body)
    # What admit returns is handed straight on: fetch_whole / open_stream own it.
    if not head.stream:
        try:
            data, _ = await fetch_whole(
                request, gateway, await admit(gateway, model, rid, meter, prefix), exchange
            )
        except ClientGone:
            return Response(content=b"", status_code=499)
        return Response(
            content=data,
            status_code=200,
            media_type="application/json",
            headers={**reply_headers, **exchange.reply_headers},
        )
    dialect = StreamDialect(
        keepalive=lambda: PING,
        fail=openai_error_event,
        answer=lambda upstream: relay(gateway, upstream, meter, fail=openai_error_event),
    )
    upstream = await admit(gateway, model, rid, meter, prefix)
    stream = await open_stream(gateway, upstream, exchange, dialect, request)
    return sse_response(stream, {**reply_headers, **exchange.reply_headers})
