"""The neuron's control API: load, unload, models, tokenize, status, events, metrics, health."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from functools import lru_cache
from pathlib import Path

from litestar import Request, Response, get, post
from litestar.response import Stream

from cortex.common.errors import CortexError, openai_error
from cortex.common.neuron import (
    LoadedModel,
    LoadProgress,
    LoadRequest,
    ModelFile,
    NodeStatus,
    StatusEvent,
    TokenizeRequest,
    TokenizeResponse,
    UnloadRequest,
)
from cortex.common.sse import PING, encode_json
from cortex.services.neuron.events import encode_event
from cortex.services.neuron.manager import ModelManager
from cortex.services.neuron.metrics import CONTENT_TYPE
from cortex.services.neuron.requests import new_job_id
from cortex.services.neuron.worker import protocol as p
from cortex.services.neuron.worker.process import WorkerGone

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
KEEPALIVE_S = 15.0


def wants_sse(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


@post(
    "/models/load",
    status_code=200,
    summary="Load a model",
    description="Starts a worker and loads the model (or joins a load already under way). "
    "With `Accept: text/event-stream` the answer is SSE: `progress` events (LoadProgress), "
    "then `loaded` (LoadedModel) or `error` (OpenAI error envelope). Otherwise the call "
    "waits and answers the LoadedModel.",
    tags=["control"],
)
async def load_model(request: Request, data: LoadRequest, manager: ModelManager) -> Response:
    runtime = manager.begin_load(data)
    if wants_sse(request):
        return Stream(
            _load_events(manager, runtime), media_type="text/event-stream", headers=SSE_HEADERS
        )
    info = await manager.wait_loaded(runtime)
    return Response(info)


async def _load_events(manager: ModelManager, runtime) -> AsyncIterator[bytes]:
    queue: asyncio.Queue[LoadProgress] = asyncio.Queue()
    runtime.progress_listeners.add(queue)
    try:
        if runtime.info.progress is not None and runtime.info.state == "loading":
            yield encode_json(runtime.info.progress, "progress")
        waiter = asyncio.ensure_future(asyncio.shield(runtime.ready))
        while not waiter.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait(
                {getter, waiter}, timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED
            )
            if getter in done:
                progress = getter.result()
                if progress.stage not in ("loaded", "failed"):
                    yield encode_json(progress, "progress")
            else:
                getter.cancel()
                if not done:
                    yield PING
        try:
            info = waiter.result()
        except CortexError as exc:
            yield encode_json(openai_error(exc), "error")
            return
        yield encode_json(info, "loaded")
    finally:
        runtime.progress_listeners.discard(queue)


@post(
    "/models/unload",
    status_code=200,
    summary="Unload a model",
    tags=["control"],
    description="Ends the model's worker process, so all of its memory returns. Requests "
    "still running end with an error. Answers the model's last figures.",
)
async def unload_model(data: UnloadRequest, manager: ModelManager) -> LoadedModel:
    return await manager.unload(data.model)


@get(
    "/models",
    summary="Models on disk",
    tags=["control"],
    description="The models directory's contents (`?rescan=true` rescans first).",
)
async def list_available(manager: ModelManager, rescan: bool = False) -> list[ModelFile]:
    return manager.rescan() if rescan else manager.catalog.listing()


@post("/models/rescan", status_code=200, summary="Rescan the models directory", tags=["control"])
async def rescan_models(manager: ModelManager) -> list[ModelFile]:
    return manager.rescan()


@post(
    "/tokenize",
    status_code=200,
    summary="Count tokens",
    tags=["control"],
    description="Tokens of `text`, or of `messages` (+ `tools`) through the chat template, "
    "for a loaded model or one on disk.",
)
async def tokenize(
    request: Request, data: TokenizeRequest, manager: ModelManager
) -> TokenizeResponse:
    body = await request.body()
    runtime = manager.models.get(data.model)
    if runtime is not None and runtime.info.state == "loaded" and runtime.worker is not None:
        return await _tokenize_in_worker(runtime, data, body)
    model_file = manager.catalog.get(data.model)
    if model_file is None:
        manager.runtime_for(data.model)  # raises the 404
    assert model_file is not None
    ids = await asyncio.to_thread(_tokenize_on_disk, model_file.path, body)
    return TokenizeResponse(
        model=data.model,
        count=len(ids),
        max_seq_len=model_file.max_seq_len,
        ids=ids if data.return_ids else None,
    )


async def _tokenize_in_worker(runtime, data: TokenizeRequest, body: bytes) -> TokenizeResponse:
    worker = runtime.worker
    rid = new_job_id()
    try:
        queue = worker.open(rid)
        worker.send(p.Tokenize(rid=rid, body=body))
    except WorkerGone:
        raise runtime.unavailable() from None
    try:
        answer = await queue.get()
    finally:
        worker.forget(rid)
    if isinstance(answer, p.Rejected):
        raise CortexError(answer.status, answer.message, code=answer.code, param=answer.param)
    if not isinstance(answer, p.Tokenized):
        raise runtime.unavailable()
    return TokenizeResponse(
        model=data.model,
        count=answer.count,
        max_seq_len=answer.max_seq_len,
        ids=answer.ids if data.return_ids else None,
    )


@lru_cache(maxsize=4)
def _prompt_builder(path: str):
    from cortex.services.neuron.pipeline.prompt import PromptBuilder

    return PromptBuilder(Path(path))


def _tokenize_on_disk(path: str, body: bytes) -> list[int]:
    from cortex.common.errors import decode_body

    request = decode_body(body, TokenizeRequest)
    builder = _prompt_builder(path)
    if request.messages is not None:
        return builder.tokenize_messages(
            request.messages, request.tools, add_generation_prompt=request.add_generation_prompt
        )
    if request.text is not None:
        return builder.encode(request.text)
    raise CortexError(400, "Send `text` or `messages` to count tokens.", param="text")


@get(
    "/status",
    summary="Node status",
    tags=["control"],
    description="Devices, models on disk and loaded models with live figures.",
)
async def status(manager: ModelManager) -> NodeStatus:
    return manager.status()


@get(
    "/events",
    summary="Event stream (SSE)",
    tags=["control"],
    description="`status` on connect, then `model`, `model_removed`, `devices`, `request` "
    "and `available` events (cortex.common.neuron), with `: ping` comments while idle.",
)
async def events(manager: ModelManager) -> Stream:
    queue = manager.bus.subscribe()
    first = encode_event(StatusEvent(status=manager.status()))

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield first
            while True:
                try:
                    data = await asyncio.wait_for(queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield PING
                    continue
                if data is None:
                    return  # fell too far behind; the client reconnects
                yield data
        finally:
            manager.bus.unsubscribe(queue)

    return Stream(stream(), media_type="text/event-stream", headers=SSE_HEADERS)


@get("/metrics", summary="Prometheus metrics", tags=["control"], media_type=CONTENT_TYPE)
async def metrics(manager: ModelManager) -> Response:
    return Response(manager.metrics.render(), media_type=CONTENT_TYPE)


@get("/health", summary="Liveness", tags=["control"], description="Always open; cheap.")
async def health(manager: ModelManager) -> dict:
    return {
        "status": "ok",
        "name": manager.name,
        "uptime_s": round(time.time() - manager.started_at, 3),
        "models": len(manager.models),
    }


CONTROL_ROUTES = [
    load_model,
    unload_model,
    list_available,
    rescan_models,
    tokenize,
    status,
    events,
    metrics,
    health,
]
