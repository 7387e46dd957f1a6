"""One inference request as the supervisor sees it: admission, events, timings, cancel.

The handle sends the client's body to the model's worker, waits for it to be accepted
(or rejected with a clear error), then yields the pipeline's events until the worker's
``Done``. If the consumer stops early (client disconnect, the HTTP task cancelled) the
handle tells the worker to cancel, so a running sequence stops within one token and a
queued one never runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

from cortex.common.errors import CortexError
from cortex.common.neuron import RequestStats
from cortex.services.neuron.pipeline.events import Finish, InferenceEvent, coalesce
from cortex.services.neuron.worker import protocol as p
from cortex.services.neuron.worker.process import WorkerGone

if TYPE_CHECKING:
    from cortex.services.neuron.models import ModelRuntime

log = logging.getLogger("cortex.neuron.requests")

Endpoint = Literal["chat", "completions"]


_job_numbers = itertools.count(1)


def new_job_id() -> str:
    """The supervisor's own id for a worker job, unique for the daemon's life.

    Frames to and from a worker are keyed by it, never by the client's ``x-request-id``:
    a retry may reuse that while the cancelled job it replaces still runs.
    """
    return f"job-{next(_job_numbers)}"


class RequestHandle:
    def __init__(self, runtime: ModelRuntime, endpoint: Endpoint, rid: str, arrived: float) -> None:
        self.runtime = runtime
        self.endpoint = endpoint
        self.rid = rid  # the client's request id, for logs and stats
        self.job = new_job_id()
        self.arrived = arrived  # time.monotonic() when the HTTP request came in
        self.prompt_tokens = 0
        self.max_tokens = 0
        self.clamped = False  # max_tokens was lowered to fit the context
        self.completion_tokens = 0
        self.started_at: float | None = None
        self.first_token_at: float | None = None
        self.last_token_at: float | None = None
        self.finish: Finish | None = None
        self.engine_figures: dict[str, int] = {}  # the worker's engine counters at the end
        self._queue: asyncio.Queue | None = None
        self._running = False
        self._closed = False

    # ------------------------------------------------------------------ start

    async def start(self, body: bytes, clamp_max_tokens: bool = False) -> None:
        """Send the request; return once accepted, raise CortexError when rejected.

        ``clamp_max_tokens`` lowers a max_tokens that does not fit instead of refusing."""
        try:
            first = await self._send(body, clamp_max_tokens)
        except BaseException:
            self._closed = True
            self.runtime.release(self)
            raise
        if isinstance(first, p.Rejected):
            self._closed = True
            self.runtime.release(self)
            raise CortexError(first.status, first.message, code=first.code, param=first.param)
        if isinstance(first, p.Done):
            self._closed = True
            self.runtime.release(self)
            raise CortexError(
                503,
                f"model {self.runtime.id!r} is unavailable: {first.error or 'worker stopped'}",
                code="model_unavailable",
            )
        assert isinstance(first, p.Accepted)
        self.prompt_tokens = first.prompt_tokens
        self.max_tokens = first.max_tokens
        self.clamped = first.clamped
        self.runtime.on_accepted(self)

    async def _send(self, body: bytes, clamp_max_tokens: bool) -> p.FromWorker:
        worker = self.runtime.worker
        if worker is None or not worker.alive:
            raise self.runtime.unavailable()
        try:
            self._queue = worker.open(self.job)
            worker.send(
                p.Generate(
                    rid=self.job,
                    endpoint=self.endpoint,
                    body=body,
                    clamp_max_tokens=clamp_max_tokens,
                )
            )
        except WorkerGone:
            raise self.runtime.unavailable() from None
        try:
            return await self._queue.get()
        except asyncio.CancelledError:
            # The client left before the worker answered: it may still queue the job.
            worker.forget(self.job)
            with contextlib.suppress(WorkerGone):
                worker.send(p.Cancel(rid=self.job))
            raise

    # ------------------------------------------------------------------ events

    async def events(self) -> AsyncIterator[InferenceEvent]:
        """The pipeline's events; the last one is always a Finish."""
        async for batch in self.batches():
            for event in batch:
                yield event

    async def batches(self) -> AsyncIterator[list[InferenceEvent]]:
        """The events in batches: whatever the worker sent since the last batch was taken.

        When the consumer keeps up, a batch is one token's events; when it falls behind
        (a fast model, a slow client), the backlog goes out as one batch with adjacent
        text merged, so the per-chunk cost is paid once per batch instead of per token.
        """
        assert self._queue is not None
        try:
            while True:
                messages = [await self._queue.get()]
                while not self._queue.empty():
                    messages.append(self._queue.get_nowait())
                batch: list[InferenceEvent] = []
                for message in messages:
                    if isinstance(message, p.Started):
                        self.started_at = time.monotonic()
                        self._running = True
                        self.runtime.on_started(self)
                    elif isinstance(message, p.Output):
                        if message.tokens:
                            self._count_tokens(message.tokens)
                        batch.extend(message.events)
                    elif isinstance(message, p.Done):
                        self.engine_figures = message.engine
                        self.finish = self._finish(message)
                        self._closed = True
                        self.runtime.on_finished(self)
                        batch.append(self.finish)
                        yield coalesce(batch)
                        return
                if batch:
                    yield coalesce(batch)
        finally:
            if not self._closed:
                self._cancel()

    def _count_tokens(self, tokens: int) -> None:
        now = time.monotonic()
        if self.first_token_at is None:
            self.first_token_at = now
        self.last_token_at = now
        self.completion_tokens += tokens
        self.runtime.on_tokens(self, tokens)

    def _cancel(self) -> None:
        """The consumer left: stop the worker's sequence and account for it."""
        self._closed = True
        worker = self.runtime.worker
        if worker is not None:
            worker.forget(self.job)
            with contextlib.suppress(WorkerGone):
                worker.send(p.Cancel(rid=self.job))
        self.finish = self._finish(p.Done(rid=self.job, reason="cancelled"))
        self.runtime.on_finished(self)

    async def collect(self) -> list[InferenceEvent]:
        return [event async for event in self.events()]

    def abandon(self) -> None:
        """Cancel a request whose events will never be read (non-stream disconnect)."""
        if not self._closed:
            self._cancel()

    # ------------------------------------------------------------------ figures

    def _finish(self, done: p.Done) -> Finish:
        now = time.monotonic()
        start = self.started_at
        ttft = prefill = decode = None
        if self.first_token_at is not None:
            ttft = (self.first_token_at - self.arrived) * 1000.0
            if start is not None and self.first_token_at > start:
                prefill = self.prompt_tokens / (self.first_token_at - start)
        if (
            self.first_token_at is not None
            and self.last_token_at is not None
            and self.completion_tokens > 1
            and self.last_token_at > self.first_token_at
        ):
            decode = (self.completion_tokens - 1) / (self.last_token_at - self.first_token_at)
        queue_ms = ((start or now) - self.arrived) * 1000.0
        error = done.error
        status = 503 if done.reason == "error" else 500
        if done.reason == "error" and error is None:
            error = "generation failed"
        return Finish(
            reason=done.reason,  # type: ignore[arg-type]
            prompt_tokens=self.prompt_tokens,
            completion_tokens=max(self.completion_tokens, done.completion_tokens),
            cached_tokens=done.cached_tokens,
            queue_ms=queue_ms,
            ttft_ms=ttft,
            prefill_tokens_per_s=prefill,
            decode_tokens_per_s=decode,
            total_ms=(now - self.arrived) * 1000.0,
            stop_sequence=done.stop_sequence,
            error=error,
            error_status=status,
        )

    @property
    def running(self) -> bool:
        return self._running

    def stats(self) -> RequestStats:
        finish = self.finish
        assert finish is not None
        status = {"cancelled": "cancelled", "error": "error"}.get(finish.reason, "ok")
        return RequestStats(
            model=self.runtime.id,
            request_id=self.rid,
            endpoint=self.endpoint,
            status=status,  # type: ignore[arg-type]
            prompt_tokens=finish.prompt_tokens,
            cached_tokens=finish.cached_tokens,
            completion_tokens=finish.completion_tokens,
            queue_ms=round(finish.queue_ms, 3),
            ttft_ms=None if finish.ttft_ms is None else round(finish.ttft_ms, 3),
            prefill_tokens_per_s=finish.prefill_tokens_per_s,
            decode_tokens_per_s=finish.decode_tokens_per_s,
            total_ms=round(finish.total_ms, 3),
            finish_reason=finish.reason,
            error=finish.error,
        )
