"""Anthropic routes: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

Requests are translated to OpenAI chat (``cortex.services.gateway.anthropic``), served
by the same scheduler and proxy as the OpenAI routes, and translated back; errors use
Anthropic's envelope. ``anthropic-beta`` headers and ``?beta=true`` are accepted and
ignored (Claude Code sends both).

count_tokens never loads a model: it asks a neuron where the model is loaded, else any
healthy neuron that has it on disk, whose ``/tokenize`` runs the model's own chat
template with just its tokenizer.
"""

from __future__ import annotations

import time

import msgspec
from litestar import Request, Response, post
from litestar.response import Stream

from cortex.common import anthropic as a
from cortex.common.errors import CortexError, decode_body
from cortex.common.openai import ChatCompletion
from cortex.services.gateway.anthropic import (
    StreamTranslator,
    count_tokens_response,
    error_from_openai,
    from_openai_response,
    to_openai_request,
    to_tokenize_request,
)
from cortex.services.gateway.auth import require_client
from cortex.services.gateway.plumbing import (
    SSE_HEADERS,
    ClientGone,
    request_id,
    resolve_model,
    unless_client_leaves,
    upstream_headers,
)
from cortex.services.gateway.proxy import Meter, Upstream, close_quietly, decide, obtain, relay
from cortex.services.gateway.state import Lease
from cortex.services.gateway.upstream import UpstreamError

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
    headers = upstream_headers(rid, req.stream)
    meter = Meter(gateway, model, "messages", started, rid)
    try:
        ticket = await decide(gateway, model, rid)
    except CortexError as exc:
        meter.report(exc.status)
        raise
    reply_headers = {"x-request-id": rid}
    if not req.stream:
        return await _whole(request, gateway, ticket, req, body, headers, meter, reply_headers)
    translator = StreamTranslator(req, model=req.model)
    if isinstance(ticket, Lease):
        upstream = Upstream()
        try:
            async for _ in obtain(
                gateway,
                ticket,
                path=CHAT_PATH,
                body=body,
                headers=headers,
                out=upstream,
                started=started,
            ):
                pass
        except CortexError as exc:
            meter.report(exc.status)
            raise
        if upstream.response is not None and upstream.response.status_code != 200:
            raise await _upstream_error(gateway, upstream, meter)
        stream = _relay(gateway, upstream, meter, translator)
    else:
        stream = _waiting_stream(gateway, ticket, body, headers, meter, started, translator)
    return Stream(stream, media_type="text/event-stream", headers={**SSE_HEADERS, **reply_headers})


async def _relay(gateway, upstream: Upstream, meter: Meter, translator: StreamTranslator):
    # message_start goes out with the neuron's opening chunk, which carries the prompt's
    # token count (Claude Code reads input_tokens there).
    async for data in relay(
        gateway,
        upstream,
        meter,
        translate=translator.feed_bytes,
        finish=translator.finish,
        fail=translator.error,
    ):
        yield data


async def _waiting_stream(gateway, ticket, body, headers, meter, started, translator):
    upstream = Upstream()
    try:
        async for ping in obtain(
            gateway,
            ticket,
            path=CHAT_PATH,
            body=body,
            headers=headers,
            out=upstream,
            started=started,
            keepalive=translator.ping,
        ):
            yield ping
    except CortexError as exc:
        meter.report(exc.status)
        yield translator.error(exc)
        return
    except BaseException:
        meter.report(499)
        raise
    if upstream.response is not None and upstream.response.status_code != 200:
        error = await _upstream_error(gateway, upstream, meter)
        yield translator.error(error)
        return
    async for data in _relay(gateway, upstream, meter, translator):
        yield data


async def _upstream_error(gateway, upstream: Upstream, meter: Meter) -> CortexError:
    response, lease = upstream.response, upstream.lease
    assert response is not None and lease is not None
    try:
        data = await response.aread()
    except UpstreamError:
        data = b""
    finally:
        await close_quietly(response)
        gateway.scheduler.release(lease)
    meter.report(response.status_code, lease.neuron)
    return error_from_openai(response.status_code, data)


async def _whole(request, gateway, ticket, req, body, headers, meter, reply_headers) -> Response:
    async def work() -> tuple[int, bytes, str]:
        upstream = Upstream()
        try:
            async for _ in obtain(
                gateway,
                ticket,
                path=CHAT_PATH,
                body=body,
                headers=headers,
                out=upstream,
                started=meter.started,
            ):
                pass
            response = upstream.response
            assert response is not None and upstream.lease is not None
            try:
                data = await response.aread()
            except UpstreamError as exc:
                raise CortexError(
                    502,
                    f"Neuron '{upstream.lease.neuron}' failed before finishing the answer "
                    f"({exc or type(exc).__name__}). Retry the request.",
                    code="upstream_failed",
                ) from None
            return response.status_code, data, upstream.lease.neuron
        finally:
            if upstream.response is not None:
                await close_quietly(upstream.response)
            if upstream.lease is not None:
                gateway.scheduler.release(upstream.lease)

    try:
        status, data, neuron = await unless_client_leaves(request, work())
    except ClientGone:
        meter.report(499)
        return Response(content=b"", status_code=499)
    except CortexError as exc:
        meter.report(exc.status)
        raise
    meter.report(status, neuron, body=data)
    if status != 200:
        raise error_from_openai(status, data)
    try:
        completion = _completion.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise CortexError(
            502, f"Neuron '{neuron}' answered a chat completion the gateway cannot read: {exc}"
        ) from None
    message = from_openai_response(completion, req, model=req.model)
    return Response(
        content=_encoder.encode(message), media_type="application/json", headers=reply_headers
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
            (v.name, file.id)
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
        neuron, name = holders[0]
    counted = await gateway.pool[neuron].tokenize(to_tokenize_request(req, model=name))
    return Response(
        content=_encoder.encode(count_tokens_response(counted)),
        media_type="application/json",
        headers={"x-request-id": request_id(request)},
    )
