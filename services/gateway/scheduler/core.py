"""The actor: the inbox, the loop that hands each message to its handler, the public API.

Everything that changes state is posted as a message (messages.py) and handled here, one
at a time, by a plain function (no ``await`` in a handler, so every decision sees the
state as it is and no lock is needed). Slow work runs as an effect task (effects.py) that
reports back with another message.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from cortex.common.neuron import NeuronEvent, NodeStatus
from cortex.services.gateway.affinity import Prefix
from cortex.services.gateway.scheduler import (
    actions,
    eviction,
    intake,
    leasing,
    loading,
    publishing,
    replicas,
)
from cortex.services.gateway.scheduler.fleet import Fleet, log
from cortex.services.gateway.scheduler.messages import (
    Abandon,
    Acquire,
    Event,
    Evicted,
    EvictionsDone,
    FleetLoad,
    FleetUnload,
    Flush,
    LoadDone,
    Pin,
    Release,
    ReplicaTick,
    SetReplicas,
    Status,
    Sweep,
    Unhealthy,
)
from cortex.services.gateway.state import Lease, Waiter


class Scheduler(Fleet):
    _task: asyncio.Task | None = None
    _ticker: asyncio.Task | None = None
    _replica_ticker: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cortex-scheduler")
        self._ticker = asyncio.create_task(self._tick(), name="cortex-scheduler-flush")
        self._replica_ticker = asyncio.create_task(
            self._tick_replicas(), name="cortex-scheduler-replicas"
        )

    async def stop(self) -> None:
        tasks = (self._ticker, self._replica_ticker, self._task, *self.effect_tasks)
        for task in tasks:
            if task is not None:
                task.cancel()
        for task in tasks:
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _run(self) -> None:
        while True:
            message = await self.inbox.get()
            try:
                self.handle(message)
            except Exception:
                log.exception("scheduler failed handling %s", type(message).__name__)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(publishing.FLUSH_INTERVAL_S)
            if publishing.needs_flush(self):
                self.post(Flush())

    async def _tick_replicas(self) -> None:
        while True:
            await asyncio.sleep(self.config.replicas.interval_s)
            self.post(ReplicaTick())

    def handle(self, message: Any) -> None:
        match message:
            case Acquire(waiter):
                leasing.on_acquire(self, waiter)
            case Release(lease):
                leasing.on_release(self, lease)
            case Abandon(waiter):
                leasing.on_abandon(self, waiter)
            case Status():
                intake.on_status(self, message.neuron, message.status, message.sent_at)
            case Event(neuron, event):
                intake.on_event(self, neuron, event)
            case Unhealthy():
                intake.on_unhealthy(self, message.neuron, message.error, message.definitive)
            case EvictionsDone():
                loading.on_evictions_done(self, message)
            case Evicted():
                eviction.on_evicted(self, message)
            case LoadDone():
                loading.on_load_done(self, message)
            case FleetLoad():
                actions.on_fleet_load(self, message)
            case FleetUnload():
                actions.on_fleet_unload(self, message)
            case Pin():
                actions.on_pin(self, message)
            case SetReplicas():
                replicas.on_set(self, message)
            case ReplicaTick():
                replicas.on_tick(self)
            case Sweep():
                eviction.on_sweep(self)
            case Flush():
                publishing.on_flush(self)

    # ------------------------------------------------------------------ public API
    # Everything that changes state goes through the inbox.

    def acquire(
        self,
        model: str,
        request_id: str,
        exclude: frozenset[str] = frozenset(),
        prefix: Prefix | None = None,
    ) -> Waiter:
        """Ask for a lease on ``model``; await ``waiter.decision`` (then maybe ``granted``).

        ``prefix`` (affinity.py) steers it to the placement that served its conversation.
        """
        waiter = Waiter(model, request_id, exclude, prefix)
        self.post(Acquire(waiter))
        return waiter

    def release(self, lease: Lease) -> None:
        self.post(Release(lease))

    def abandon(self, waiter: Waiter) -> None:
        """The client left (or timed out) while waiting; drop it, or return its lease."""
        self.post(Abandon(waiter))

    def neuron_status(self, neuron: str, status: NodeStatus, sent_at: float) -> None:
        self.post(Status(neuron, status, sent_at))

    def neuron_event(self, neuron: str, event: NeuronEvent) -> None:
        self.post(Event(neuron, event))

    def neuron_unhealthy(self, neuron: str, error: str, definitive: bool = False) -> None:
        self.post(Unhealthy(neuron, error, definitive))

    def sweep(self) -> None:
        self.post(Sweep())

    def fleet_load(
        self, model: str, neuron: str | None, device: str | None
    ) -> tuple[asyncio.Future, asyncio.Future]:
        loop = asyncio.get_running_loop()
        started, done = loop.create_future(), loop.create_future()
        self.post(FleetLoad(model, neuron, device, started, done))
        return started, done

    def fleet_unload(self, model: str, neuron: str | None, force: bool) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        self.post(FleetUnload(model, neuron, force, done))
        return done

    def set_pin(self, model: str, pinned: bool) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        self.post(Pin(model, pinned, done))
        return done

    def set_replicas(self, model: str, low: int, high: int) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        self.post(SetReplicas(model, low, high, done))
        return done
