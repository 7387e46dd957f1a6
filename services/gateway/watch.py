"""Keeping up with the neurons: each neuron's event stream, and health checks on a timer.

The event stream (``GET /events``) tells the scheduler what changes as it happens; it
reconnects with backoff when it breaks, and a break triggers one immediate health check.
The health check (``GET /status`` every ``health.interval_s`` on apscheduler) is what
decides up and down: ``health.missed_beats`` failures in a row mark a neuron down, one
answer marks it up again. Idle-TTL unloads and eviction sweeps share the same timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime

import httpx
import msgspec
from apscheduler.schedulers.asyncio import AsyncIOScheduler

from cortex.common.config import GatewayConfig
from cortex.common.errors import CortexError
from cortex.common.neuron import NeuronEvent, StatusEvent
from cortex.common.sse import SSEDecoder
from cortex.services.gateway.neuron_client import NeuronClient, NeuronPool
from cortex.services.gateway.scheduler import Scheduler

log = logging.getLogger("cortex.gateway.watch")

_event_decoder = msgspec.json.Decoder(NeuronEvent)
BACKOFF_MIN_S = 0.25
BACKOFF_MAX_S = 5.0


class NeuronWatcher:
    def __init__(self, client: NeuronClient, scheduler: Scheduler, config: GatewayConfig):
        self.client = client
        self.scheduler = scheduler
        self.health = config.health
        self._task: asyncio.Task | None = None
        self._checking = False
        self._connected = False
        self._answered = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._follow_events(), name=f"events-{self.client.name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def check(self) -> None:
        """One health check: ``GET /status``; its answer also reconciles the scheduler."""
        if self._checking:
            return
        self._checking = True
        sent_at = time.monotonic()
        try:
            status = await self.client.status(limit_s=self.health.timeout_s)
        except CortexError as exc:
            self.scheduler.neuron_unhealthy(self.client.name, exc.message)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.scheduler.neuron_unhealthy(
                self.client.name, f"its /status answer is not a cortex neuron's: {exc}"
            )
        else:
            self.scheduler.neuron_status(self.client.name, status, sent_at)
            if not self._connected:
                self._answered.set()  # it is back: reconnect the event stream now
        finally:
            self._checking = False

    async def _follow_events(self) -> None:
        backoff = BACKOFF_MIN_S
        while True:
            self._connected = False
            self._answered.clear()
            try:
                await self._read_events()
                reason = "event stream ended"
            except asyncio.CancelledError:
                raise
            except (httpx.HTTPError, CortexError) as exc:
                reason = str(exc) or type(exc).__name__
            except Exception as exc:  # never let the watcher die
                log.exception("reading events of neuron %s failed", self.client.name)
                reason = str(exc)
            if self._connected:
                # A stream that broke: check health now rather than at the next beat.
                # Failed reconnects do not count as beats; the timer decides "down".
                backoff = BACKOFF_MIN_S
                await self.check()
            log.debug("neuron %s: %s; reconnecting in %.2fs", self.client.name, reason, backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._answered.wait(), backoff)
            backoff = min(BACKOFF_MAX_S, backoff * 2)

    async def _read_events(self) -> None:
        sent_at = time.monotonic()
        timeout = httpx.Timeout(
            connect=self.client.control.timeout.connect, read=60.0, write=10.0, pool=10.0
        )
        async with self.client.control.stream("GET", "/events", timeout=timeout) as response:
            if response.status_code != 200:
                body = await response.aread()
                raise CortexError(
                    response.status_code,
                    f"GET /events answered {response.status_code}: {body[:200]!r}",
                )
            self._connected = True
            decoder = SSEDecoder()
            async for chunk in response.aiter_bytes():
                for sse in decoder.feed(chunk):
                    try:
                        event = _event_decoder.decode(sse.data)
                    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                        log.warning(
                            "neuron %s sent an event the gateway cannot read (%s): %.200s",
                            self.client.name,
                            exc,
                            sse.data,
                        )
                        continue
                    if isinstance(event, StatusEvent):
                        self.scheduler.neuron_status(self.client.name, event.status, sent_at)
                    else:
                        self.scheduler.neuron_event(self.client.name, event)


class Watch:
    """Every neuron's watcher plus the apscheduler jobs (health, sweep)."""

    def __init__(self, pool: NeuronPool, scheduler: Scheduler, config: GatewayConfig) -> None:
        self.watchers = [NeuronWatcher(c, scheduler, config) for c in pool.clients.values()]
        self.scheduler = scheduler
        self.config = config
        self.jobs = AsyncIOScheduler()

    async def _sweep(self) -> None:
        self.scheduler.sweep()

    def start(self) -> None:
        for watcher in self.watchers:
            watcher.start()
            self.jobs.add_job(
                watcher.check,
                "interval",
                seconds=self.config.health.interval_s,
                id=f"health-{watcher.client.name}",
                next_run_time=datetime.now(),  # the first beat at start, not one interval in
                max_instances=1,
                coalesce=True,
                misfire_grace_time=None,
            )
        self.jobs.add_job(
            self._sweep,
            "interval",
            seconds=self.config.eviction.sweep_interval_s,
            id="sweep",
            max_instances=1,
            coalesce=True,
            misfire_grace_time=None,
        )
        self.jobs.start()

    async def stop(self) -> None:
        if self.jobs.running:
            self.jobs.shutdown(wait=False)
        for watcher in self.watchers:
            await watcher.stop()
