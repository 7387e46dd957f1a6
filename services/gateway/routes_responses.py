"""OpenAI Responses routes: ``POST /v1/responses``, ``GET`` / ``DELETE
/v1/responses/{id}`` and ``GET /v1/responses/{id}/input_items``.

Requests are translated to OpenAI chat (``cortex.services.gateway.responses``), served
by the same scheduler and proxy as the other routes, and translated back. A response
made with ``store`` (the default) is written to the store before its last byte goes
out, so a client that continues at once with ``previous_response_id`` finds it.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from typing import Literal

import msgspec
from litestar import Request, Response, delete, get, post
from litestar.params import Parameter

from cortex.common import responses as r
from cortex.common.errors import CortexError, decode_body
from cortex.services.gateway.auth import require_client
from cortex.services.gateway.plumbing import (
    ClientGone,
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
from cortex.services.gateway.responses import (
    ResponseStream,
    from_chat_completion,
    start_turn,
    to_chat_request,
)

CHAT_PATH = "/v1/chat/completions"
log = logging.getLogger("cortex.gateway.responses")
_encoder = msgspec.json.Encoder()
_completion = msgspec.json.Decoder(r.ChatCompletion)


@post("/v1/responses", status_code=200)
async def create_response(request: Request) -> Response:
    started = time.perf_counter()
    require_client(request)
    gateway = request.app.state.gateway
    rid = request_id(request)
    req = decode_body(await request.body(), r.ResponsesRequest)
    model = resolve_model(gateway, req.model)
    turn = await start_turn(gateway.responses, req)
    chat = to_chat_request(req, turn.context, turn.functions, model=model, inherited=turn.inherited)
    meter = Meter(gateway, model, "responses", started, rid)
    exchange = Exchange(CHAT_PATH, _encoder.encode(chat), upstream_headers(rid, req.stream), meter)
    reply_headers = {"x-request-id": rid}
    # What admit returns is handed straight on: fetch_whole / open_stream own it.
    if not req.stream:
        try:
            upstream = await admit(gateway, model, rid, meter)
            data, neuron = await fetch_whole(request, gateway, upstream, exchange)
        except ClientGone:
            return Response(content=b"", status_code=499)
        except CortexError as exc:
            raise in_responses_terms(exc) from None
        try:
            completion = _completion.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise CortexError(
                502, f"Neuron '{neuron}' answered a chat completion the gateway cannot read: {exc}"
            ) from None
        response = from_chat_completion(completion, turn)
        if req.store:
            await keep(gateway, turn.stored(response))
        return Response(
            content=_encoder.encode(response), media_type="application/json", headers=reply_headers
        )
    translator = ResponseStream(turn)

    def fail(error: CortexError) -> bytes:
        return translator.error(in_responses_terms(error))

    async def answer(upstream):
        stored = not req.store
        async for data in relay(
            gateway,
            upstream,
            meter,
            translate=translator.feed_bytes,
            finish=translator.finish,
            fail=fail,
        ):
            if not stored and translator.response is not None:
                stored = True
                await keep(gateway, turn.stored(translator.response))
            yield data

    dialect = StreamDialect(keepalive=translator.ping, fail=fail, answer=answer)
    try:
        upstream = await admit(gateway, model, rid, meter)
        stream = await open_stream(gateway, upstream, exchange, dialect, request)
    except CortexError as exc:
        raise in_responses_terms(exc) from None
    return sse_response(stream, reply_headers)


async def keep(gateway, stored: r.StoredResponse) -> None:
    """Store a response; a database that fails is logged, and the answer still goes out
    (only a later previous_response_id or GET will miss it)."""
    try:
        await gateway.responses.aput(stored)
    except sqlite3.Error as exc:
        log.error(
            "could not store response %s in %s: %s", stored.response.id, gateway.responses.path, exc
        )


def in_responses_terms(error: CortexError) -> CortexError:
    """A neuron's context overflow names chat's fields; a Responses client sent others."""
    if error.code == "context_length_exceeded":
        error.param = "input"
        error.message = error.message.replace("length of the messages", "length of the input")
        error.message = error.message.replace("(max_tokens)", "(max_output_tokens)")
    return error


async def _stored(request: Request, response_id: str) -> r.StoredResponse:
    require_client(request)
    stored = await request.app.state.gateway.responses.aget(response_id)
    if stored is None:
        raise not_found(response_id)
    return stored


def not_found(response_id: str) -> CortexError:
    return CortexError(
        404,
        f"Response with id '{response_id}' not found: only responses created with "
        "`store: true` (the default) are kept, until deleted or past the gateway's "
        "retention (gateway.responses_max_age_days / responses_max_count).",
        code="response_not_found",
        param="response_id",
    )


def _json(payload: object, request: Request) -> Response:
    return Response(
        content=_encoder.encode(payload),
        media_type="application/json",
        headers={"x-request-id": request_id(request)},
    )


@get("/v1/responses/{response_id:str}")
async def retrieve_response(request: Request, response_id: str) -> Response:
    if request.query_params.get("stream") in ("true", "1"):
        raise CortexError(
            400,
            "Streaming a stored response needs `background: true`, which cortex does not "
            "support; retrieve it without `stream`.",
            code="invalid_request",
            param="stream",
        )
    return _json((await _stored(request, response_id)).response, request)


@delete("/v1/responses/{response_id:str}", status_code=200)
async def delete_response(request: Request, response_id: str) -> Response:
    require_client(request)
    if not await request.app.state.gateway.responses.adelete(response_id):
        raise not_found(response_id)
    return _json(r.DeletedResponse(id=response_id), request)


@get("/v1/responses/{response_id:str}/input_items")
async def list_input_items(
    request: Request,
    response_id: str,
    limit: int = Parameter(default=20, ge=1, le=100),
    order: Literal["asc", "desc"] = "desc",
    after: str | None = None,
) -> Response:
    items = list((await _stored(request, response_id)).input_items)
    if order == "desc":
        items.reverse()
    if after is not None:
        ids = [getattr(item, "id", None) for item in items]
        if after not in ids:
            raise CortexError(
                400,
                f"`after` names item '{after}', which is not an input item of response "
                f"'{response_id}'.",
                code="invalid_request",
                param="after",
            )
        items = items[ids.index(after) + 1 :]
    page = items[:limit]
    return _json(
        r.InputItemList(
            data=page,
            first_id=_item_id(page[0]) if page else None,
            last_id=_item_id(page[-1]) if page else None,
            has_more=len(items) > limit,
        ),
        request,
    )


def _item_id(item: r.InputItem) -> str | None:
    value = getattr(item, "id", None)
    return value if isinstance(value, str) else None
