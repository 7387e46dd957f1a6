"""A model the neuron has loaded (or is loading): its worker, queue and live figures.

``info`` is the ``LoadedModel`` the control API reports; this object keeps it current
as requests are accepted, start, produce tokens and finish, and tells the manager when
something changed (the manager coalesces those into ``model`` events).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from cortex.common.errors import CortexError
from cortex.common.neuron import LoadedModel, LoadProgress
from cortex.services.neuron.requests import Endpoint, RequestHandle
from cortex.services.neuron.worker.process import WorkerProcess

RATE_WINDOW_S = 5.0


class RollingRate:
    """Tokens per second over the last few seconds."""

    def __init__(self, window: float = RATE_WINDOW_S) -> None:
        self.window = window
        self._samples: deque[tuple[float, int]] = deque()

    def add(self, tokens: int, now: float | None = None) -> None:
        self._samples.append((now if now is not None else time.monotonic(), tokens))

    def rate(self, now: float | None = None) -> float:
        now = now if now is not None else time.monotonic()
        while self._samples and self._samples[0][0] < now - self.window:
            self._samples.popleft()
        if not self._samples:
            return 0.0
        return sum(n for _, n in self._samples) / self.window


class ModelRuntime:
    def __init__(
        self,
        info: LoadedModel,
        *,
        max_queue: int,
        changed: Callable[[ModelRuntime, bool], None],
        finished: Callable[[RequestHandle], None],
        tokens: Callable[[ModelRuntime, int], None],
    ) -> None:
        self.info = info
        self.max_queue = max_queue
        self.worker: WorkerProcess | None = None
        self.ready: asyncio.Future[LoadedModel] = asyncio.get_running_loop().create_future()
        self.progress_listeners: set[asyncio.Queue] = set()
        self.rate = RollingRate()
        self.started_monotonic = time.monotonic()
        self.outstanding = 0  # accepted and not finished (queued + running)
        self.handles: dict[str, RequestHandle] = {}  # by job id
        self._changed = changed
        self._finished = finished
        self._tokens = tokens
        self._avg_request_s = 1.0

    @property
    def id(self) -> str:
        return self.info.id

    # ------------------------------------------------------------------ load state

    def set_progress(self, progress: LoadProgress) -> None:
        self.info.progress = progress
        for queue in list(self.progress_listeners):
            queue.put_nowait(progress)
        self._changed(self, False)

    def unavailable(self) -> CortexError:
        state = self.info.state
        if state == "loading":
            return CortexError(
                503,
                f"model {self.id!r} is still loading; retry shortly.",
                code="model_loading",
                retry_after=2,
            )
        return CortexError(
            503,
            f"model {self.id!r} is not available ({self.info.error or state}).",
            code="model_unavailable",
        )

    # ------------------------------------------------------------------ admission

    def admit(self, endpoint: Endpoint, rid: str, arrived: float) -> RequestHandle:
        """A handle for a new request, or 429 when the queue is full."""
        if self.info.state != "loaded" or self.worker is None:
            raise self.unavailable()
        capacity = self.info.max_concurrency + self.max_queue
        if self.outstanding >= capacity:
            waiting = self.outstanding - self.info.max_concurrency + 1
            retry = max(1.0, self._avg_request_s * waiting / max(1, self.info.max_concurrency))
            raise CortexError(
                429,
                f"model {self.id!r} is busy: {self.info.in_flight} requests running and "
                f"{self.info.queued} queued (queue limit {self.max_queue}). Retry later.",
                code="queue_full",
                retry_after=retry,
            )
        self.outstanding += 1  # reserved now, so concurrent admissions see it
        handle = RequestHandle(self, endpoint, rid, arrived)
        self.handles[handle.job] = handle
        return handle

    def release(self, handle: RequestHandle) -> None:
        """A handle that never got accepted (rejected, worker gone)."""
        if self.handles.pop(handle.job, None) is not None:
            self.outstanding -= 1

    # callbacks from RequestHandle ----------------------------------------------

    def on_accepted(self, handle: RequestHandle) -> None:
        self.info.queued += 1
        self._changed(self, False)

    def on_started(self, handle: RequestHandle) -> None:
        self.info.queued = max(0, self.info.queued - 1)
        self.info.in_flight += 1
        self._changed(self, False)

    def on_tokens(self, handle: RequestHandle, tokens: int) -> None:
        self.rate.add(tokens)
        self.info.completion_tokens_total += tokens
        self._tokens(self, tokens)
        self._changed(self, False)

    def on_finished(self, handle: RequestHandle) -> None:
        if self.handles.pop(handle.job, None) is None:
            return
        self.outstanding -= 1
        if handle.running:
            self.info.in_flight = max(0, self.info.in_flight - 1)
        else:
            self.info.queued = max(0, self.info.queued - 1)
        finish = handle.finish
        self.info.requests_total += 1
        if finish is not None:
            if finish.reason == "error":
                self.info.errors_total += 1
            self.info.prompt_tokens_total += finish.prompt_tokens
            if finish.ttft_ms is not None:
                self.info.ttft_ms = round(finish.ttft_ms, 3)
            self._avg_request_s = 0.8 * self._avg_request_s + 0.2 * finish.total_ms / 1000.0
        self._take_engine_figures(handle.engine_figures)
        self.info.last_used_at = time.time()
        self._finished(handle)
        self._changed(self, False)

    def _take_engine_figures(self, figures: dict[str, int]) -> None:
        """The worker's engine counters, as of the request that just ended."""
        info = self.info
        info.forwards_total = figures.get("forwards", info.forwards_total)
        cache = info.prefix_cache
        if cache is not None and "prefix_cache_bytes" in figures:
            cache.size_bytes = figures["prefix_cache_bytes"]
            cache.entries = figures["prefix_cache_entries"]
            cache.lookups = figures["prefix_cache_lookups"]
            cache.hits = figures["prefix_cache_hits"]
            cache.cached_tokens = figures["prefix_cache_tokens"]

    def refresh_rate(self) -> bool:
        """Recompute the rolling rate; True when it changed."""
        rate = round(self.rate.rate(), 2)
        if rate == self.info.tokens_per_s:
            return False
        self.info.tokens_per_s = rate
        return True

    def fail_open_requests(self) -> None:
        """The worker is gone: account for requests whose streams end with an error."""
        self.info.in_flight = 0
        self.info.queued = 0
