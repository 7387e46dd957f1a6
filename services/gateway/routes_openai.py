"""OpenAI routes: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``.

Bodies go upstream as the client sent them (only ``model`` is rewritten when an alias
was used) and answers come back byte for byte. A stream whose model is loaded answers
with the neuron's status and headers; a stream that must wait for a load answers 200 at
once and sends ``: ping`` comments until the first byte, so proxies and clients do not
drop it, and reports any later failure as an error event.
"""

from __future__ import annotations

import time

from litestar import Request, Response, get, post
from litestar.response import Stream

from cortex.common.errors import CortexError, openai_error_body
from cortex.common.openai import ModelCard, ModelList
from cortex.common.sse import PING
from cortex.services.gateway.anthropic import error_from_openai
from cortex.services.gateway.auth import require_client
from cortex.services.gateway.plumbing import (
    SSE_HEADERS,
    ClientGone,
    parse_head,
    replace_model,
    request_id,
    resolve_model,
    unless_client_leaves,
    upstream_headers,
)
from cortex.services.gateway.proxy import (
    Meter,
    Upstream,
    close_quietly,
    decide,
    obtain,
    relay,
)
from cortex.services.gateway.state import Lease
from cortex.services.gateway.upstream import UpstreamError


def openai_error_event(error: CortexError) -> bytes:
    return b"data: " + openai_error_body(error) + b"\n\n"


@get("/v1/models", sync_to_thread=False)
def list_models(request: Request) -> Response:
    require_client(request)
    gateway = request.app.state.gateway
    return Response(
        content=ModelList(data=model_cards(gateway)),
        media_type="application/json",
    )


def model_cards(gateway) -> list[ModelCard]:
    scheduler = gateway.scheduler
    cards = []
    for entry in scheduler.catalogue():
        records = scheduler.placements_of(entry.id)
        up = {n for n, v in scheduler.neurons.items() if v.up}
        loaded_on = [r.neuron for r in records if r.state == "loaded" and r.neuron in up]
        loading = [r for r in records if r.state == "loading" and r.neuron in up]
        available_up = [n for n in entry.available_on if n in up]
        if loaded_on:
            state = "loaded"
        elif loading:
            state = "loading"
        elif available_up:
            state = "available"
        else:
            state = "unavailable"
        extra: dict = {
            "state": state,
            "loaded_on": loaded_on,
            "available_on": entry.available_on,
            "pinned": entry.pinned,
        }
        if loading:
            extra["loading_on"] = [r.neuron for r in loading]
            progress = loading[0].progress
            extra["progress"] = progress.fraction if progress is not None else 0.0
        if entry.memory_estimate is not None:
            extra["memory_estimate"] = entry.memory_estimate
        if entry.max_seq_len is not None:
            extra["max_seq_len"] = entry.max_seq_len
        created = min((int(r.loaded_at) for r in records if r.loaded_at), default=0)
        cards.append(ModelCard(id=entry.id, created=created, cortex=extra))
    for alias, target in gateway.settings.config.aliases.items():
        if not any(ch in alias for ch in "*?[") and not scheduler.model_known(alias):
            cards.append(ModelCard(id=alias, cortex={"state": "alias", "alias_of": target}))
    return cards


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
    head = parse_head(body)
    model = resolve_model(gateway, head.model)
    if model != head.model:
        body = replace_model(body, model)
    meter = Meter(gateway, model, endpoint, started, rid)
    headers = upstream_headers(rid, head.stream)
    try:
        ticket = await decide(gateway, model, rid)
    except CortexError as exc:
        meter.report(exc.status)
        raise
    reply_headers = {"x-request-id": rid}
    if not head.stream:
        return await _whole(request, gateway, ticket, path, body, headers, meter, reply_headers)
    if isinstance(ticket, Lease):
        upstream = Upstream()
        try:
            async for _ in obtain(
                gateway,
                ticket,
                path=path,
                body=body,
                headers=headers,
                out=upstream,
                started=started,
            ):
                pass
        except CortexError as exc:
            meter.report(exc.status)
            raise
        response = upstream.response
        assert response is not None and upstream.lease is not None
        if response.status_code != 200:
            return await _upstream_error(gateway, upstream, meter, reply_headers)
        return Stream(
            relay(gateway, upstream, meter, fail=openai_error_event),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **reply_headers},
        )
    return Stream(
        _waiting_stream(gateway, ticket, path, body, headers, meter, started),
        media_type="text/event-stream",
        headers={**SSE_HEADERS, **reply_headers},
    )


async def _waiting_stream(gateway, ticket, path, body, headers, meter: Meter, started: float):
    upstream = Upstream()
    try:
        async for ping in obtain(
            gateway,
            ticket,
            path=path,
            body=body,
            headers=headers,
            out=upstream,
            started=started,
            keepalive=lambda: PING,
        ):
            yield ping
    except CortexError as exc:
        meter.report(exc.status)
        yield openai_error_event(exc)
        return
    except BaseException:
        meter.report(499)
        raise
    response = upstream.response
    assert response is not None and upstream.lease is not None
    if response.status_code != 200:
        try:
            data = await response.aread()
        except UpstreamError:
            data = b""
        finally:
            await close_quietly(response)
            gateway.scheduler.release(upstream.lease)
        meter.report(response.status_code, upstream.lease.neuron)
        yield openai_error_event(error_from_openai(response.status_code, data))
        return
    async for chunk in relay(gateway, upstream, meter, fail=openai_error_event):
        yield chunk


async def _upstream_error(gateway, upstream: Upstream, meter: Meter, reply_headers) -> Response:
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
    error = error_from_openai(response.status_code, data)
    return Response(
        content=openai_error_body(error),
        status_code=response.status_code,
        media_type="application/json",
        headers={**error.headers(), **reply_headers},
    )


async def _whole(request, gateway, ticket, path, body, headers, meter, reply_headers) -> Response:
    """A non-stream request: wait, send, read the whole answer; cancelled if the client leaves."""

    async def work() -> tuple[int, bytes, str]:
        upstream = Upstream()
        try:
            async for _ in obtain(
                gateway,
                ticket,
                path=path,
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
        error = error_from_openai(status, data)
        return Response(
            content=openai_error_body(error),
            status_code=status,
            media_type="application/json",
            headers={**error.headers(), **reply_headers},
        )
    return Response(
        content=data, status_code=200, media_type="application/json", headers=reply_headers
    )
