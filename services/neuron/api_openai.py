"""OpenAI routes: chat completions, legacy completions, models.

The body is validated twice: by Litestar against the wire types (which also gives the
OpenAPI schema), then by the model's worker, which owns sampling, templates and the
context check. The worker answers before the response starts, so every error is a
plain JSON error with the right status; once streaming, a failure becomes an error
event followed by ``[DONE]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from litestar import Request, Response, get, post
from litestar.response import Stream

from cortex.common.errors import CortexError
from cortex.common.openai import (
    ChatCompletion,
    ChatCompletionRequest,
    Completion,
    CompletionRequest,
    ModelCard,
    ModelList,
    completion_id,
    now,
)
from cortex.services.neuron.http_support import request_id
from cortex.services.neuron.manager import ModelManager
from cortex.services.neuron.pipeline import project
from cortex.services.neuron.pipeline.events import Finish
from cortex.services.neuron.requests import Endpoint, RequestHandle

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
# Asked by the gateway (clamp_max_tokens): lower max_tokens to what fits the context
# instead of refusing; the answer then reports the lowered value.
CLAMP_HEADER = "x-cortex-clamp-max-tokens"
CLAMPED_HEADER = "x-cortex-max-tokens-clamped"


@post(
    "/v1/chat/completions",
    status_code=200,
    summary="Chat completion (OpenAI)",
    description="Stream (`stream: true`, SSE) or not. Extensions: `top_k`, `min_p`, "
    "`repetition_penalty`; responses carry `timings` and `reasoning_content`.",
    tags=["openai"],
)
async def chat_completions(
    request: Request, data: ChatCompletionRequest, manager: ModelManager
) -> Response:
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    return await _generate(request, manager, "chat", data.model, data.stream, include_usage)


@post(
    "/v1/completions",
    status_code=200,
    summary="Text completion (OpenAI, legacy)",
    description="One prompt (a string or token ids) per request; stream or not.",
    tags=["openai"],
)
async def completions(request: Request, data: CompletionRequest, manager: ModelManager) -> Response:
    include_usage = bool(data.stream_options and data.stream_options.include_usage)
    return await _generate(request, manager, "completions", data.model, data.stream, include_usage)


@get(
    "/v1/models",
    summary="Loaded models (OpenAI)",
    description="Models loaded or loading here; `cortex` holds state and live figures.",
    tags=["openai"],
)
async def list_models(manager: ModelManager) -> ModelList:
    cards = []
    for info in manager.loaded_models():
        cards.append(
            ModelCard(
                id=info.id,
                created=int(info.loaded_at or manager.started_at),
                owned_by=manager.name,
                cortex={
                    "state": info.state,
                    "backend": info.backend,
                    "devices": info.devices,
                    "max_seq_len": info.max_seq_len,
                    "max_concurrency": info.max_concurrency,
                    "in_flight": info.in_flight,
                    "queued": info.queued,
                    "tokens_per_s": info.tokens_per_s,
                    "memory_bytes": info.memory_bytes,
                },
            )
        )
    return ModelList(data=cards)


# ---------------------------------------------------------------------- generation


async def _generate(
    request: Request,
    manager: ModelManager,
    endpoint: Endpoint,
    model: str,
    stream: bool,
    include_usage: bool,
) -> Response:
    arrived = time.monotonic()
    body = await request.body()
    runtime = manager.runtime_for(model)
    handle = runtime.admit(endpoint, request_id(request), arrived)
    await handle.start(body, clamp_max_tokens=request.headers.get(CLAMP_HEADER) == "1")
    headers = {CLAMPED_HEADER: str(handle.max_tokens)} if handle.clamped else {}
    created = now()
    cid = completion_id("chatcmpl" if endpoint == "chat" else "cmpl")
    if stream:
        projector: project.ChatStreamProjector | project.CompletionStreamProjector
        if endpoint == "chat":
            projector = project.ChatStreamProjector(model, cid, created, include_usage)
        else:
            projector = project.CompletionStreamProjector(model, cid, created, include_usage)
        return Stream(
            _sse(handle, projector),
            media_type="text/event-stream",
            headers={**SSE_HEADERS, **headers},
        )
    events = await _collect_unless_disconnected(request, handle)
    finish = events[-1] if events and isinstance(events[-1], Finish) else None
    if finish is not None and finish.reason == "error":
        raise project.finish_error(finish)
    result: ChatCompletion | Completion
    if endpoint == "chat":
        result = project.chat_completion(events, model=model, completion_id=cid, created=created)
    else:
        result = project.completion(events, model=model, completion_id=cid, created=created)
    return Response(result, headers=headers)


async def _sse(handle: RequestHandle, projector) -> AsyncIterator[bytes]:
    opening = getattr(projector, "start", None)
    if opening is not None:
        # Headers and the role chunk (with the prompt's size) go out before the first token.
        yield opening(prompt_tokens=handle.prompt_tokens)
    async for batch in handle.batches():
        data = b"".join(projector.feed(event) for event in batch)
        if data:
            yield data


async def _collect_unless_disconnected(request: Request, handle: RequestHandle) -> list:
    """All events of a non-stream request; cancels generation if the client leaves."""
    collector = asyncio.ensure_future(handle.collect())
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({collector, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if collector in done:
        return collector.result()
    collector.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await collector
    handle.abandon()
    raise CortexError(499, "client closed the request", code="client_closed")


async def _disconnected(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


OPENAI_ROUTES = [chat_completions, completions, list_models]
