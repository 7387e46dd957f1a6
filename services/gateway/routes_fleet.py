"""The fleet API: what the console and scripts read and drive.

* ``GET /fleet``: :class:`~cortex.common.fleet.FleetSnapshot`.
* ``GET /fleet/events``: SSE; ``snapshot`` on connect (and again whenever this client
  fell behind), then ``neuron``, ``placement``, ``placement_removed``, ``catalogue`` and
  ``log`` events; a placement goes out when it changed, and every second while it is
  loading or serving;
  ``requests`` (the requests being served) once a second while there are any;
  ``: ping`` every 15 s when nothing happens.
* ``GET /fleet/logs``: the last 200 log entries (the events' ``log`` history).
* ``POST /fleet/models/{id}/load`` (body: optional ``LoadAction``): loads the model
  (the scheduler places it unless ``neuron``/``device`` say where), evicting idle
  models if needed. Waits until it is loaded (``?wait=false``: answers 202 once the
  load has started; its progress shows in the events).
* ``POST /fleet/models/{id}/unload`` (``UnloadAction``): from one neuron or all;
  refused while requests are in flight unless ``?force=true``.
* ``POST /fleet/models/{id}/pin`` / ``unpin``: pinned models are never evicted or
  unloaded for idleness; API pins are saved in the state file and survive restarts.
* ``POST /fleet/models/{id}/replicas`` (body ``{"min": 1, "max": 2}``): the model's
  replica range, saved in the state file like API pins and over models.toml's.

Actions answer :class:`~cortex.common.fleet.ActionResult`; errors use OpenAI's envelope.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import msgspec
from litestar import Request, Response, get, post
from litestar.response import Stream

from cortex.common.errors import CortexError, decode_body
from cortex.common.fleet import (
    ActionResult,
    LoadAction,
    ReplicasAction,
    SnapshotEvent,
    UnloadAction,
)
from cortex.common.sse import PING, encode_json
from cortex.services.gateway.auth import admin_guard, reader_guard
from cortex.services.gateway.hub import RESYNC
from cortex.services.gateway.plumbing import SSE_HEADERS

T = TypeVar("T")
KEEPALIVE_S = 15.0
_encoder = msgspec.json.Encoder()


def _json(value: object, status: int = 200) -> Response:
    return Response(
        content=_encoder.encode(value), status_code=status, media_type="application/json"
    )


def _body(raw: bytes, type_: type[T]) -> T:
    return type_() if not raw.strip() else decode_body(raw, type_)


@get("/fleet", guards=[reader_guard], sync_to_thread=False)
def fleet(request: Request) -> Response:
    return _json(request.app.state.gateway.scheduler.snapshot())


@get("/fleet/logs", guards=[reader_guard], sync_to_thread=False)
def fleet_logs(request: Request) -> Response:
    return _json(list(request.app.state.gateway.hub.recent_logs))


@get("/fleet/events", guards=[reader_guard])
async def fleet_events(request: Request) -> Stream:
    gateway = request.app.state.gateway
    subscription = gateway.hub.subscribe()

    def snapshot() -> bytes:
        return encode_json(SnapshotEvent(gateway.scheduler.snapshot()), event="snapshot")

    first = snapshot()
    requests = gateway.requests.event_bytes()

    async def stream():
        try:
            yield first
            if requests is not None:
                yield requests
            while True:
                try:
                    data = await asyncio.wait_for(subscription.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield PING
                    continue
                yield snapshot() if data == RESYNC else data
        finally:
            subscription.close()

    return Stream(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


@post("/fleet/models/{model_id:str}/load", guards=[admin_guard], status_code=200)
async def load(request: Request, model_id: str, wait: bool = True) -> Response:
    gateway = request.app.state.gateway
    action = _body(await request.body(), LoadAction)
    scheduler = gateway.scheduler
    model = scheduler.resolve(model_id)
    started, done = scheduler.fleet_load(model, action.neuron, action.device)
    neuron = await started  # raises the refusal (404, 409, 503)
    if not wait:
        placements = [
            scheduler.placement_wire(r)
            for r in scheduler.placements_of(model)
            if r.neuron == neuron
        ]
        if done.done() and not done.cancelled() and done.exception() is None:
            return _json(done.result())
        return _json(
            ActionResult(
                ok=True,
                action="load",
                model=model,
                message=f"loading {model} on {neuron}; follow GET /fleet/events for progress",
                placements=placements,
            ),
            status=202,
        )
    timeout = gateway.settings.config.gateway.load_timeout_s
    try:
        result = await asyncio.wait_for(asyncio.shield(done), timeout)
    except TimeoutError:
        raise CortexError(
            504,
            f"{model} is still loading on {neuron} after {timeout:.0f}s "
            "(gateway.load_timeout_s); follow GET /fleet/events for its progress.",
            code="load_timeout",
        ) from None
    return _json(result)


@post("/fleet/models/{model_id:str}/unload", guards=[admin_guard], status_code=200)
async def unload(request: Request, model_id: str, force: bool = False) -> Response:
    gateway = request.app.state.gateway
    action = _body(await request.body(), UnloadAction)
    model = gateway.scheduler.resolve(model_id)
    result = await gateway.scheduler.fleet_unload(model, action.neuron, force)
    return _json(result, status=200 if result.ok else 502)


@post("/fleet/models/{model_id:str}/pin", guards=[admin_guard], status_code=200)
async def pin(request: Request, model_id: str) -> Response:
    gateway = request.app.state.gateway
    model = gateway.scheduler.resolve(model_id)
    return _json(await gateway.scheduler.set_pin(model, True))


@post("/fleet/models/{model_id:str}/unpin", guards=[admin_guard], status_code=200)
async def unpin(request: Request, model_id: str) -> Response:
    gateway = request.app.state.gateway
    model = gateway.scheduler.resolve(model_id)
    return _json(await gateway.scheduler.set_pin(model, False))


@post("/fleet/models/{model_id:str}/replicas", guards=[admin_guard], status_code=200)
async def replicas(request: Request, model_id: str) -> Response:
    gateway = request.app.state.gateway
    action = decode_body(await request.body(), ReplicasAction)
    model = gateway.scheduler.resolve(model_id)
    return _json(await gateway.scheduler.set_replicas(model, action.min, action.max))
