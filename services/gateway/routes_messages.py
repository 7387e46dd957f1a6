"""Anthropic routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Requests are translated to OpenAI chat (``cortex.services.gateway.anthropic``), served
by the same scheduler and proxy as the OpenAI routes, and translated back; errors use
Anthropic's envelope. ``anthropic-beta`` headers and ``?beta=true`` are accepted and
ignored (Claude Code sends both).

count_tokens never loads a model: it asks a neuron where the model is loaded, else any
healthy neuron that has it on disk, whose ``/tokenize`` runs the model's own chat
template with just its tokenizer. A prompt that does not fit the model's context (the
loaded one's, else the one a load would get) is Anthropic's ``prompt is too long`` 400,
as /v1/messages would answer it.
"""

from __future__ import annotations

import time

import msgspec
from litestar import Request, Response, post

from cortex.common import anthropic as a
from cortex.common.errors import CortexError, anthropic_overflow_message, decode_body
from cortex.common.openai import ChatCompletion
from cortex.services.gateway import access_log, affinity
from cortex.services.gateway.anthropic import (
    StreamTranslator,
    count_tokens_response,
    from_openai_response,
    to_openai_request,
    to_tokenize_request,
)
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

CHAT_PATH = "/v1/chat/completions"
_encoder = msgspec.json.Encoder()
_completion = msgspec.json.Decoder(ChatCompletion)


@post("/v1/messages", status_code=200)
async def messages(request: Request) -> Response:
    started = time.perf_counter()
    require_client(request)
    gateway = request.app.state.gateway
    rid = request_id(request)
    req = decode_body(await request.body(), a.MessagesRequest)
    model = resolve_model(gateway, req.model)
    body = _encoder.encode(to_openai_request(req, model=model))
    headers = upstream_headers(rid, req.stream, gateway.settings.clamps_max_tokens(model))
    meter = Meter(gateway, model, "messages", started, rid)
    reply_headers = {"x-request-id": rid}
    exchange = Exchange(CHAT_PATH, body, headers, meter)
    prefix = affinity.from_openai(body, system_breakpoint=affinity.caches_system(req))
    # What admit returns is handed straight on: fetch_whole / open_stream own it.
    if not req.stream:
        upstream = await admit(gateway, model, rid, meter, prefix)
        return await _whole(request, gateway, upstream, req, exchange, reply_headers)
    translator = StreamTranslator(req, model=req.model)

    def answer(upstream):
        # message_start goes out with the neuron's opening chunk, which carries the
        # prompt's token count (Claude Code reads input_tokens there).
        return relay(
            gateway,
            upstream,
            meter,
            translate=translator.feed_bytes,
            finish=translator.finish,
            fail=translator.error,
        )

    dialect = StreamDialect(keepalive=translator.ping, fail=translator.error, answer=answer)
    upstream = await admit(gateway, model, rid, meter, prefix)
    stream = await open_stream(gateway, upstream, exchange, dialect, request)
    return sse_response(stream, {**reply_headers, **exchange.reply_headers})


async def _whole(request, gateway, upstream, req, exchange, reply_headers) -> Response:
    try:
        data, neuron = await fetch_whole(request, gateway, upstream, exchange)
    except ClientGone:
        return Response(content=b"", status_code=499)
    try:
        completion = _completion.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CortexError(
            502, f"Neuron '{neuron}' answered a chat completion the gateway cannot read: {exc}"
        ) from None
    message = from_openai_response(completion, req, model=req.model)
    return Response(
        content=_encoder.encode(message),
        media_type="application/json",
        headers={**reply_headers, **exchange.reply_headers},
    )


@post("/v1/messages/count_tokens", status_code=200)
async def count_tokens(request: Request) -> Response:
    require_client(request)
    gateway = request.app.state.gateway
    req = decode_body(await request.body(), a.CountTokensRequest)
    model = resolve_model(gateway, req.model)
    scheduler = gateway.scheduler
    loaded = scheduler.loaded_neurons(model)
    if loaded:
        neuron, name = loaded[0], model
    else:
        profile = gateway.settings.profiles.get(model)
        path = profile.neuron_path if profile else model
        holders = [
            (v.name, file)
            for v in scheduler.neurons.values()
            if v.up and (file := v.has_file(path)) is not None and scheduler.allowed(v, model)
        ]
        if not holders:
            raise CortexError(
                503,
                f"No healthy neuron can count tokens for '{model}': it is not loaded and no "
                "neuron that has it on disk is up. Check GET /fleet.",
                code="model_unavailable_all_down",
            )
        neuron, file = holders[0]
        name = file.id
    access_log.note(neuron=neuron)
    counted = await gateway.pool[neuron].tokenize(to_tokenize_request(req, model=name))
    limit = scheduler.context_length(model) or counted.max_seq_len
    if limit and counted.count >= limit:
        raise CortexError(
            400,
            anthropic_overflow_message(counted.count, 0, limit),
            code="context_length_exceeded",
            param="messages",
        )
    return Response(
        content=_encoder.encode(count_tokens_response(counted)),
        media_type="application/json",
        headers={"x-request-id": request_id(request)},
    )
