"""The scheduler: one asyncio task that owns which model is loading, loaded or unloading where.

Requests, neuron watchers, timers and the fleet API send it messages; it handles each
one synchronously (no ``await`` inside a handler), so every decision sees the state as
it is, and no lock is needed. Anything slow (a load, an unload) runs as an effect task
that reports back with another message; a decision is never taken on a view that an
effect may have changed meanwhile (llama-swap #946): effects carry the record's
generation and the handler checks it.

Neurons are the source of truth: their status and events overwrite the figures here.

Decisions worth knowing:

* Requests for a model that is loaded go to the placement with the fewest requests in
  flight. Otherwise they wait for the one load of that model, whoever triggered it.
* A model that fits only after busy models free memory waits for them (until the
  request's load timeout); one that cannot fit even after evicting every idle unpinned
  model is refused at once with 503 naming the numbers.
* When every client waiting for a load leaves before the gateway has sent the load to
  the neuron (it may be evicting first), the load is abandoned. Once the neuron is
  loading, the load runs to the end: the cost is mostly paid, and the model then sits
  idle like any other, subject to idle TTL and eviction.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Protocol

from cortex.common.errors import CortexError
from cortex.common.fleet import (
    ActionResult,
    CatalogueEntry,
    CatalogueUpdate,
    FleetSnapshot,
    LogEntry,
    LogEvent,
    LogKind,
    NeuronUpdate,
    PlacementRemoved,
    PlacementUpdate,
)
from cortex.common.neuron import (
    AvailableEvent,
    DevicesEvent,
    LoadedModel,
    LoadProgress,
    LoadRequest,
    ModelEvent,
    ModelFile,
    ModelRemovedEvent,
    NeuronEvent,
    NodeStatus,
    RequestEvent,
    StatusEvent,
)
from cortex.services.gateway.estimate import estimate, human
from cortex.services.gateway.hub import EventHub
from cortex.services.gateway.metrics import GatewayMetrics
from cortex.services.gateway.policy import (
    DeviceRoom,
    NeuronRoom,
    Plan,
    Resident,
    Unplaceable,
    choose_evictions,
    plan_placement,
)
from cortex.services.gateway.settings import Settings
from cortex.services.gateway.state import Lease, NeuronView, PlacementRecord, Waiter
from cortex.services.gateway.store import StateStore

log = logging.getLogger("cortex.gateway.scheduler")

FLUSH_INTERVAL_S = 0.25
HEARTBEAT_S = 1.0


class Effects(Protocol):
    """What the scheduler asks of neurons. Raises CortexError when a neuron refuses or fails."""

    async def load(self, neuron: str, request: LoadRequest) -> LoadedModel: ...

    async def unload(self, neuron: str, model: str) -> None: ...


def is_memory_error(error: CortexError) -> bool:
    text = f"{error.code or ''} {error.message}".lower()
    return error.status == 507 or "memory" in text or "oom" in text.split()


# --------------------------------------------------------------------------- messages


def _future() -> asyncio.Future:
    return asyncio.get_running_loop().create_future()


@dataclass
class _Acquire:
    waiter: Waiter


@dataclass
class _Release:
    lease: Lease


@dataclass
class _Abandon:
    waiter: Waiter


@dataclass
class _Status:
    neuron: str
    status: NodeStatus
    sent_at: float  # monotonic time the request (or subscription) went out


@dataclass
class _Event:
    neuron: str
    event: NeuronEvent


@dataclass
class _Unhealthy:
    neuron: str
    error: str
    definitive: bool  # connection refused by a request: no need to wait for more beats


@dataclass
class _EvictionsDone:
    model: str
    neuron: str
    generation: int
    failures: list[str]


@dataclass
class _Evicted:
    model: str
    neuron: str
    generation: int
    error: CortexError | None


@dataclass
class _LoadDone:
    model: str
    neuron: str
    generation: int
    seconds: float
    loaded: LoadedModel | None = None
    error: CortexError | None = None


@dataclass
class _FleetLoad:
    model: str
    neuron: str | None
    device: str | None
    started: asyncio.Future
    done: asyncio.Future


@dataclass
class _FleetUnload:
    model: str
    neuron: str | None
    force: bool
    done: asyncio.Future


@dataclass
class _Pin:
    model: str
    pinned: bool
    done: asyncio.Future


@dataclass
class _Sweep:
    pass


@dataclass
class _Flush:
    pass


# --------------------------------------------------------------------------- scheduler


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        store: StateStore,
        hub: EventHub,
        metrics: GatewayMetrics,
        effects: Effects,
    ) -> None:
        self.settings = settings
        self.config = settings.config
        self.store = store
        self.hub = hub
        self.metrics = metrics
        self.effects = effects
        self.neurons: dict[str, NeuronView] = {
            n.name: NeuronView(n.name, n.endpoint) for n in self.config.neurons
        }
        self.placements: dict[tuple[str, str], PlacementRecord] = {}
        self.waiting: dict[str, list[Waiter]] = {}
        self._generation = 0
        self._inbox: asyncio.Queue[Any] = asyncio.Queue()
        self._task: asyncio.Task | None = None
        self._ticker: asyncio.Task | None = None
        self._effects: set[asyncio.Task] = set()
        self._dirty: set[tuple[str, str]] = set()
        self._removed: set[tuple[str, str]] = set()
        self._dirty_neurons: set[str] = set()
        self._catalogue_dirty = False
        self._last_heartbeat = 0.0
        self._preloaded: set[str] = set()
        self._blocked_note: dict[str, str] = {}
        for name in self.neurons:
            metrics.neuron_up.labels(name).set(0)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="cortex-scheduler")
        self._ticker = asyncio.create_task(self._tick(), name="cortex-scheduler-flush")

    async def stop(self) -> None:
        for task in (self._ticker, self._task, *self._effects):
            if task is not None:
                task.cancel()
        for task in (self._ticker, self._task, *self._effects):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _run(self) -> None:
        while True:
            message = await self._inbox.get()
            try:
                self._handle(message)
            except Exception:
                log.exception("scheduler failed handling %s", type(message).__name__)

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            if self._needs_flush():
                self._post(_Flush())

    def _needs_flush(self) -> bool:
        """Read-only check (no decision depends on it) so an idle gateway stays quiet."""
        if self._dirty or self._removed or self._dirty_neurons or self._catalogue_dirty:
            return True
        if time.monotonic() - self._last_heartbeat < HEARTBEAT_S:
            return False
        return any(
            r.in_flight or r.state in ("loading", "unloading") for r in self.placements.values()
        )

    def _post(self, message: Any) -> None:
        self._inbox.put_nowait(message)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        task = asyncio.create_task(coro)
        self._effects.add(task)
        task.add_done_callback(self._effects.discard)

    # ------------------------------------------------------------------ public API
    # Everything that changes state goes through the inbox.

    def acquire(self, model: str, request_id: str, exclude: frozenset[str] = frozenset()) -> Waiter:
        """Ask for a lease on ``model``; await ``waiter.decision`` (then maybe ``granted``)."""
        waiter = Waiter(model, request_id, exclude)
        self._post(_Acquire(waiter))
        return waiter

    def release(self, lease: Lease) -> None:
        self._post(_Release(lease))

    def abandon(self, waiter: Waiter) -> None:
        """The client left (or timed out) while waiting; drop it, or return its lease."""
        self._post(_Abandon(waiter))

    def neuron_status(self, neuron: str, status: NodeStatus, sent_at: float) -> None:
        self._post(_Status(neuron, status, sent_at))

    def neuron_event(self, neuron: str, event: NeuronEvent) -> None:
        self._post(_Event(neuron, event))

    def neuron_unhealthy(self, neuron: str, error: str, definitive: bool = False) -> None:
        self._post(_Unhealthy(neuron, error, definitive))

    def sweep(self) -> None:
        self._post(_Sweep())

    def fleet_load(
        self, model: str, neuron: str | None, device: str | None
    ) -> tuple[asyncio.Future, asyncio.Future]:
        loop = asyncio.get_running_loop()
        started, done = loop.create_future(), loop.create_future()
        self._post(_FleetLoad(model, neuron, device, started, done))
        return started, done

    def fleet_unload(self, model: str, neuron: str | None, force: bool) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        self._post(_FleetUnload(model, neuron, force, done))
        return done

    def set_pin(self, model: str, pinned: bool) -> asyncio.Future:
        done = asyncio.get_running_loop().create_future()
        self._post(_Pin(model, pinned, done))
        return done

    # ------------------------------------------------------------------ reads
    # Synchronous reads of a consistent instant (the loop is single-threaded); they never
    # feed a decision outside the scheduler.

    def pinned(self, model: str) -> bool:
        return self.pin_source(model) is not None

    def pin_source(self, model: str) -> str | None:
        profile = self.settings.profiles.get(model)
        if profile is not None and profile.pin:
            return "config"
        if model in self.store.state.pins:
            return "api"
        return None

    def _claimed_paths(self) -> set[str]:
        return {p.neuron_path for p in self.settings.profiles.values() if p.neuron_path != p.id}

    def model_ids(self) -> list[str]:
        ids: dict[str, None] = dict.fromkeys(self.settings.profiles)
        claimed = self._claimed_paths()
        for view in self.neurons.values():
            for file_id in view.available:
                if file_id not in claimed:
                    ids.setdefault(file_id)
        for model, _ in self.placements:
            ids.setdefault(model)
        return list(ids)

    def model_known(self, model: str) -> bool:
        if model in self.settings.profiles:
            return True
        if any(model == key[0] for key in self.placements):
            return True
        if model in self._claimed_paths():
            return False
        return any(model in view.available for view in self.neurons.values())

    def unknown_model_error(self, shown: str, *, param: str | None = None) -> CortexError:
        """404 for a model the fleet lacks; 503 while no neuron has answered yet.

        Right after the gateway starts, the neurons' catalogues are not known: a model
        missing then may well exist, so the client is told to retry rather than that
        the model does not exist.
        """
        unreached = [v.name for v in self.neurons.values() if v.last_seen is None]
        if unreached and len(unreached) == len(self.neurons):
            return CortexError(
                503,
                f"No neuron has answered the gateway yet ({', '.join(unreached)}), so it "
                f"cannot tell whether '{shown}' exists. Retry in a few seconds; GET /fleet "
                "shows each neuron's state.",
                code="neurons_not_ready",
                param=param,
                retry_after=2,
            )
        listing = ", ".join(sorted(self.model_ids())[:20]) or "none yet (are the neurons up?)"
        text = (
            f"The model '{shown}' does not exist in this fleet. Known models: {listing}. "
            "GET /v1/models lists them with their state."
        )
        if unreached:
            text += f" Not reached yet, so not counted: neurons {', '.join(unreached)}."
        return CortexError(404, text, code="model_not_found", param=param)

    def resolve(self, name: str) -> str:
        return self.settings.resolve_alias(name, self.model_known)

    def placements_of(self, model: str) -> list[PlacementRecord]:
        return [r for (m, _), r in self.placements.items() if m == model]

    def loaded_neurons(self, model: str) -> list[str]:
        return [
            r.neuron
            for r in self.placements_of(model)
            if r.state == "loaded" and self.neurons[r.neuron].up
        ]

    def _file(self, view: NeuronView, model: str) -> ModelFile | None:
        profile = self.settings.profiles.get(model)
        return view.has_file(profile.neuron_path if profile else model)

    def allowed(self, view: NeuronView, model: str) -> bool:
        profile = self.settings.profiles.get(model)
        return profile is None or not profile.neurons or view.name in profile.neurons

    def _device_kind(self, view: NeuronView) -> str:
        return "cuda" if any(d.kind == "cuda" for d in view.devices) else "cpu"

    def estimate_for(self, view: NeuronView, model: str) -> int | None:
        file = self._file(view, model)
        if file is None:
            return None
        kind = self._device_kind(view)
        profile = self.settings.profiles.get(model)
        return estimate(file, profile, kind, self.store.learned(model, kind))  # type: ignore[arg-type]

    def catalogue(self) -> list[CatalogueEntry]:
        entries = []
        for model in self.model_ids():
            profile = self.settings.profiles.get(model)
            available = [
                v.name
                for v in self.neurons.values()
                if self._file(v, model) is not None and self.allowed(v, model)
            ]
            loaded = [r.neuron for r in self.placements_of(model) if r.state == "loaded"]
            memory = None
            for view in self.neurons.values():
                if view.name in available and view.up:
                    memory = self.estimate_for(view, model)
                    break
            max_seq = profile.max_seq_len if profile else None
            if max_seq is None:
                for view in self.neurons.values():
                    file = self._file(view, model)
                    if file is not None and file.max_seq_len:
                        max_seq = file.max_seq_len
                        break
            entries.append(
                CatalogueEntry(
                    id=model,
                    available_on=available,
                    loaded_on=loaded,
                    pinned=self.pinned(model),
                    pin_source=self.pin_source(model),  # type: ignore[arg-type]
                    priority=profile.priority if profile else 0,
                    memory_estimate=memory,
                    max_seq_len=max_seq,
                    profile=profile is not None,
                )
            )
        return entries

    def _queued(self, model: str) -> int:
        return len(self.waiting.get(model, ()))

    def placement_wire(self, record: PlacementRecord):
        queued = self._queued(record.model) if record.state == "loading" else 0
        return record.to_wire(self.pinned(record.model), queued)

    def snapshot(self) -> FleetSnapshot:
        return FleetSnapshot(
            time=time.time(),
            neurons=[v.to_wire() for v in self.neurons.values()],
            placements=[self.placement_wire(r) for r in self.placements.values()],
            catalogue=self.catalogue(),
        )

    # ------------------------------------------------------------------ dispatch

    def _handle(self, message: Any) -> None:
        match message:
            case _Acquire(waiter):
                self._on_acquire(waiter)
            case _Release(lease):
                self._on_release(lease)
            case _Abandon(waiter):
                self._on_abandon(waiter)
            case _Status():
                self._on_status(message.neuron, message.status, message.sent_at)
            case _Event(neuron, event):
                self._on_event(neuron, event)
            case _Unhealthy():
                self._on_unhealthy(message.neuron, message.error, message.definitive)
            case _EvictionsDone():
                self._on_evictions_done(message)
            case _Evicted():
                self._on_evicted(message)
            case _LoadDone():
                self._on_load_done(message)
            case _FleetLoad():
                self._on_fleet_load(message)
            case _FleetUnload():
                self._on_fleet_unload(message)
            case _Pin():
                self._on_pin(message)
            case _Sweep():
                self._on_sweep()
            case _Flush():
                self._on_flush()

    # ------------------------------------------------------------------ requests

    def _on_acquire(self, waiter: Waiter) -> None:
        lease = self._grant(waiter)
        if lease is not None:
            waiter.grant(lease)
            return
        self.waiting.setdefault(waiter.model, []).append(waiter)
        self.metrics.queued.labels(waiter.model).set(self._queued(waiter.model))
        self._advance(waiter.model)
        if waiter in self.waiting.get(waiter.model, ()):
            waiter.queue()
            self._mark_model(waiter.model)

    def _grant(self, waiter: Waiter) -> Lease | None:
        best: PlacementRecord | None = None
        for record in self.placements_of(waiter.model):
            if record.state != "loaded" or record.effect == "unloading":
                continue
            if record.neuron in waiter.exclude or not self.neurons[record.neuron].up:
                continue
            if best is None or record.in_flight < best.in_flight:
                best = record
        if best is None:
            return None
        best.in_flight += 1
        best.last_used = time.time()
        self._dirty.add(best.key)
        self.metrics.in_flight.labels(best.model, best.neuron).inc()
        return Lease(best.model, best.neuron, best.generation, waiter.request_id)

    def _on_release(self, lease: Lease) -> None:
        record = self.placements.get((lease.model, lease.neuron))
        self.metrics.in_flight.labels(lease.model, lease.neuron).dec()
        if record is None or record.generation != lease.generation:
            return
        record.in_flight = max(0, record.in_flight - 1)
        record.last_used = time.time()
        self._dirty.add(record.key)
        if record.in_flight == 0 and self.waiting:
            self._advance_all()

    def _on_abandon(self, waiter: Waiter) -> None:
        if self._remove_waiter(waiter):
            self._mark_model(waiter.model)
            log.info("request %s left while waiting for %s", waiter.request_id, waiter.model)
        elif not waiter.consumed:
            lease = waiter.lease
            if lease is not None:
                self._on_release(lease)
        for future in (waiter.decision, waiter.granted):
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved: no "never retrieved" warning

    def _remove_waiter(self, waiter: Waiter) -> bool:
        """Take ``waiter`` out of its model's queue; False when it was not queued."""
        queue = self.waiting.get(waiter.model)
        queued = queue is not None and waiter in queue
        if queued:
            queue.remove(waiter)
            if not queue:
                del self.waiting[waiter.model]
        self.metrics.queued.labels(waiter.model).set(self._queued(waiter.model))
        return queued

    def _advance_all(self) -> None:
        order = sorted(self.waiting.items(), key=lambda item: item[1][0].since if item[1] else 0)
        for model, _ in order:
            self._advance(model)

    def _advance(self, model: str) -> None:
        """Serve, keep waiting, start a load for, or refuse the requests waiting for ``model``."""
        queue = self.waiting.get(model)
        if not queue:
            return
        for waiter in list(queue):
            lease = self._grant(waiter)
            if lease is not None:
                self._remove_waiter(waiter)
                waiter.grant(lease)
        queue = self.waiting.get(model)
        if not queue:
            self._mark_model(model)
            return
        active = [
            r
            for r in self.placements_of(model)
            if r.state in ("loading", "unloading") or r.effect is not None
        ]
        if any(self.neurons[r.neuron].up for r in active):
            return  # its load ends in a grant; its unload ends in a new plan
        exclude = frozenset.intersection(*(w.exclude for w in queue))
        decision = self._plan(model, exclude=exclude)
        if isinstance(decision, Plan):
            self._blocked_note.pop(model, None)
            self._start_placement(model, decision)
            return
        if decision.wait:
            if self._blocked_note.get(model) != decision.message:
                self._blocked_note[model] = decision.message
                self._log("info", decision.message, model=model)
            return
        self._blocked_note.pop(model, None)
        error = CortexError(503, decision.message, code=f"model_unavailable_{decision.reason}")
        for waiter in list(queue):
            self._remove_waiter(waiter)
            waiter.fail(error)
        self._mark_model(model)

    # ------------------------------------------------------------------ placement

    def _rooms(
        self, model: str, *, exclude: frozenset[str] = frozenset(), only: str | None = None
    ) -> tuple[list[NeuronRoom], dict[str, int]]:
        profile = self.settings.profiles.get(model)
        rooms: list[NeuronRoom] = []
        needs: dict[str, int] = {}
        for view in self.neurons.values():
            if only is not None and view.name != only:
                continue
            file = self._file(view, model)
            kind = self._device_kind(view)
            devices = []
            for device in view.devices:
                if device.kind != kind and not (profile and device.id in profile.devices):
                    continue
                if profile and profile.devices and device.id not in profile.devices:
                    continue
                devices.append(self._device_room(view, device))
            need = self.estimate_for(view, model)
            if need is not None:
                needs[view.name] = need
            rooms.append(
                NeuronRoom(
                    name=view.name,
                    up=view.up and view.name not in exclude,
                    has_model=file is not None,
                    allowed=self.allowed(view, model),
                    devices=tuple(devices),
                )
            )
        return rooms, needs

    def _device_room(self, view: NeuronView, device) -> DeviceRoom:
        residents = []
        pending = 0
        for record in self.placements.values():
            if record.neuron != view.name:
                continue
            held = record.memory_on(device.id)
            if held <= 0 and record.device != device.id:
                continue
            if record.state == "loading":
                pending += max(0, record.estimate - record.memory_bytes)
            residents.append(self._resident(record, device.id, held))
        capacity = device.budget if device.budget is not None else device.memory_total
        physical = device.memory_free - pending if device.kind == "cuda" else None
        return DeviceRoom(device.id, capacity, tuple(residents), physical)

    def _resident(self, record: PlacementRecord, device: str, held: int) -> Resident:
        profile = self.settings.profiles.get(record.model)
        busy = (
            record.in_flight > 0
            or bool(self.waiting.get(record.model))
            or bool(record.action_waiters)
            or record.effect is not None
        )
        return Resident(
            model=record.model,
            neuron=record.neuron,
            device=device,
            memory=held,
            state=record.state,
            pinned=self.pinned(record.model),
            busy=busy,
            last_used=record.last_used,
            priority=profile.priority if profile else 0,
        )

    def _plan(
        self,
        model: str,
        *,
        exclude: frozenset[str] = frozenset(),
        only: str | None = None,
        device: str | None = None,
    ) -> Plan | Unplaceable:
        rooms, needs = self._rooms(model, exclude=exclude, only=only)
        if not rooms and only is not None:
            return Unplaceable("no_neuron", f"There is no neuron named '{only}'.")
        profile = self.settings.profiles.get(model)
        devices = [device] if device else list(profile.devices) if profile else []
        return plan_placement(model, needs, rooms, self.config.eviction.strategy, devices=devices)

    def _new_record(self, model: str, neuron: str, state: str, **kwargs: Any) -> PlacementRecord:
        self._generation += 1
        record = PlacementRecord(model, neuron, state, self._generation, **kwargs)
        self.placements[record.key] = record
        self._dirty.add(record.key)
        self._removed.discard(record.key)
        self._catalogue_dirty = True
        return record

    def _drop(self, record: PlacementRecord) -> None:
        if self.placements.get(record.key) is record:
            del self.placements[record.key]
            self._dirty.discard(record.key)
            self._removed.add(record.key)
            self._catalogue_dirty = True

    def _start_placement(
        self, model: str, plan: Plan, *, wanted: bool = False, reason: str | None = None
    ) -> PlacementRecord:
        record = self._new_record(
            model,
            plan.neuron,
            "loading",
            device=plan.device,
            devices=[plan.device],
            estimate=plan.need,
            progress=LoadProgress(stage="queued"),
            wanted=wanted,
        )
        reason = reason or self.config.eviction.strategy
        if plan.evict:
            record.effect = "evicting"
            for resident in plan.evict:
                victim = self.placements[(resident.model, resident.neuron)]
                self._begin_unload(victim, reason, f"to make room for {model}")
            self._spawn(self._evict_then_report(record, list(plan.evict)))
        else:
            self._begin_load(record)
        return record

    def _begin_unload(self, record: PlacementRecord, reason: str, why: str) -> None:
        record.state = "unloading"
        record.effect = "unloading"
        record.touch()
        self._dirty.add(record.key)
        self.metrics.evictions.labels(record.model, reason).inc()
        kind: LogKind = "unload" if reason == "action" else "evict"
        self._log(
            kind,
            f"unloading {record.model} from {record.neuron} ({reason}: {why})",
            model=record.model,
            neuron=record.neuron,
            reason=reason,
        )

    async def _evict_then_report(self, record: PlacementRecord, evict: list[Resident]) -> None:
        async def one(resident: Resident) -> str | None:
            victim_generation = self.placements[(resident.model, resident.neuron)].generation
            try:
                await self.effects.unload(resident.neuron, resident.model)
            except CortexError as exc:
                self._post(_Evicted(resident.model, resident.neuron, victim_generation, exc))
                return f"{resident.model}: {exc.message}"
            self._post(_Evicted(resident.model, resident.neuron, victim_generation, None))
            return None

        results = await asyncio.gather(*(one(r) for r in evict))
        failures = [r for r in results if r]
        self._post(_EvictionsDone(record.model, record.neuron, record.generation, failures))

    def _on_evicted(self, message: _Evicted) -> None:
        record = self.placements.get((message.model, message.neuron))
        if record is None or record.generation != message.generation:
            return
        if message.error is None or message.error.status == 404:
            self._finish_unload(record, None)
        else:
            record.effect = None
            record.state = "loaded"
            record.touch()
            self._dirty.add(record.key)
            self._log(
                "error",
                f"unloading {record.model} from {record.neuron} failed: {message.error.message}",
                level="error",
                model=record.model,
                neuron=record.neuron,
            )
            self._finish_unload(record, message.error, keep=True)

    def _finish_unload(
        self, record: PlacementRecord, error: CortexError | None, keep: bool = False
    ) -> None:
        if not keep:
            self._drop(record)
        ok = error is None
        result = ActionResult(
            ok=ok,
            action="unload",
            model=record.model,
            message=(
                f"unloaded {record.model} from {record.neuron}"
                if ok
                else f"unloading {record.model} from {record.neuron} failed: {error.message}"
            ),
        )
        for future in record.action_waiters:
            if not future.done():
                future.set_result(result)
        record.action_waiters.clear()
        if self.waiting:
            self._advance_all()

    def _on_evictions_done(self, message: _EvictionsDone) -> None:
        record = self.placements.get((message.model, message.neuron))
        if record is None or record.generation != message.generation:
            self._advance(message.model)
            return
        if not self.waiting.get(record.model) and not record.wanted:
            self._log(
                "info",
                f"load of {record.model} on {record.neuron} abandoned: every client waiting "
                "for it left",
                model=record.model,
                neuron=record.neuron,
            )
            self._drop(record)
            self._advance_all()
            return
        self._begin_load(record)

    def _begin_load(self, record: PlacementRecord) -> None:
        record.effect = "loading"
        record.touch()
        self._dirty.add(record.key)
        profile = self.settings.profiles.get(record.model)
        view = self.neurons[record.neuron]
        path = profile.neuron_path if profile else record.model
        request = LoadRequest(
            model=path,
            id=record.model if path != record.model else None,
            backend=profile.backend if profile else None,
            devices=[record.device] if record.device and len(view.devices) > 1 else None,
            max_seq_len=profile.max_seq_len if profile else None,
            cache_type=profile.cache_type if profile else None,
            max_concurrency=profile.max_concurrency if profile else None,
        )
        if record.device and profile and profile.devices:
            request.devices = [record.device]
        self._log(
            "load",
            f"loading {record.model} on {record.neuron} (estimated {human(record.estimate)})",
            model=record.model,
            neuron=record.neuron,
        )
        self._spawn(self._load_and_report(record.model, record.neuron, record.generation, request))

    async def _load_and_report(
        self, model: str, neuron: str, generation: int, request: LoadRequest
    ) -> None:
        started = time.monotonic()
        try:
            loaded = await self.effects.load(neuron, request)
        except CortexError as exc:
            self._post(_LoadDone(model, neuron, generation, time.monotonic() - started, error=exc))
        except Exception as exc:  # an effect must always report back
            log.exception("load of %s on %s failed unexpectedly", model, neuron)
            error = CortexError(502, f"loading {model} on {neuron} failed: {exc}")
            seconds = time.monotonic() - started
            self._post(_LoadDone(model, neuron, generation, seconds, error=error))
        else:
            self._post(
                _LoadDone(model, neuron, generation, time.monotonic() - started, loaded=loaded)
            )

    def _on_load_done(self, message: _LoadDone) -> None:
        record = self.placements.get((message.model, message.neuron))
        current = record is not None and record.generation == message.generation
        self.metrics.loads.labels(
            message.model, message.neuron, "ok" if message.error is None else "error"
        ).inc()
        if message.error is None:
            self.metrics.load_seconds.labels(message.model).observe(message.seconds)
            loaded = message.loaded
            assert loaded is not None
            if not current:
                record = self.placements.get((message.model, message.neuron))
                if record is None:
                    record = self._new_record(message.model, message.neuron, loaded.state)
            assert record is not None
            record.effect = None
            record.apply(loaded)
            if record.state == "loading":
                record.effect = None  # the neuron's events will say when it is loaded
            self._learn(record)
            self._log(
                "load",
                f"loaded {record.model} on {record.neuron} in {message.seconds:.1f}s "
                f"({human(record.memory_bytes)})",
                model=record.model,
                neuron=record.neuron,
            )
            self._settle_load_actions(record)
            self._advance(record.model)
            return
        error = message.error
        assert error is not None
        if not current:
            self._advance(message.model)
            return
        assert record is not None
        if is_memory_error(error) and not record.retried:
            record.retried = True
            victims = self._idle_on(record.neuron, record.device, exclude=record.model)
            if victims:
                self._log(
                    "info",
                    f"loading {record.model} on {record.neuron} ran out of memory; evicting "
                    f"{', '.join(v.model for v in victims)} and retrying once",
                    level="warning",
                    model=record.model,
                    neuron=record.neuron,
                )
                record.effect = "evicting"
                for victim in victims:
                    self._begin_unload(
                        self.placements[victim.key], "load_retry", f"retrying {record.model}"
                    )
                residents = [
                    self._resident(v, record.device or "", v.memory_on(record.device or ""))
                    for v in victims
                ]
                self._spawn(self._evict_then_report(record, residents))
                return
        self._log(
            "error",
            f"loading {record.model} on {record.neuron} failed: {error.message}",
            level="error",
            model=record.model,
            neuron=record.neuron,
        )
        self._drop(record)
        failure = CortexError(
            503,
            f"Loading model '{record.model}' on neuron '{record.neuron}' failed: {error.message}",
            code="model_load_failed",
        )
        for future in record.action_waiters:
            if not future.done():
                future.set_exception(failure)
        record.action_waiters.clear()
        for waiter in list(self.waiting.get(record.model, ())):
            self._remove_waiter(waiter)
            waiter.fail(failure)
        self._mark_model(record.model)
        self._advance_all()

    def _idle_on(self, neuron: str, device: str | None, *, exclude: str) -> list[PlacementRecord]:
        victims = []
        for record in self.placements.values():
            if record.neuron != neuron or record.model == exclude:
                continue
            if device and record.memory_on(device) <= 0:
                continue
            resident = self._resident(record, device or "", record.memory_on(device or ""))
            if resident.evictable:
                victims.append(record)
        return victims

    def _learn(self, record: PlacementRecord) -> None:
        if record.state != "loaded" or record.memory_bytes <= 0:
            return
        kind = self._device_kind(self.neurons[record.neuron])
        self.store.learn(record.model, kind, record.memory_bytes)
        self._catalogue_dirty = True

    def _settle_load_actions(self, record: PlacementRecord) -> None:
        if record.state != "loaded":
            return
        result = ActionResult(
            ok=True,
            action="load",
            model=record.model,
            message=f"{record.model} is loaded on {record.neuron}",
            placements=[self.placement_wire(record)],
        )
        for future in record.action_waiters:
            if not future.done():
                future.set_result(result)
        record.action_waiters.clear()

    # ------------------------------------------------------------------ neurons

    def _on_status(self, name: str, status: NodeStatus, sent_at: float) -> None:
        view = self.neurons.get(name)
        if view is None:
            return
        self._mark_up(view)
        view.devices = list(status.devices)
        view.backends = list(status.backends)
        view.version = status.version
        self.metrics.set_devices(name, view.devices)
        self._set_available(view, status.available)
        listed = set()
        for loaded in status.loaded:
            listed.add(loaded.id)
            record = self.placements.get((loaded.id, name))
            if record is not None and record.changed_at > sent_at:
                continue  # we know something newer than this status
            self._upsert(name, loaded)
        for record in [r for r in self.placements.values() if r.neuron == name]:
            if record.model in listed or record.effect is not None or record.changed_at > sent_at:
                continue
            self._log(
                "info",
                f"{record.model} is no longer loaded on {name}",
                model=record.model,
                neuron=name,
            )
            self._drop(record)
        self._dirty_neurons.add(name)
        self._preload_pins()
        self._advance_all()

    def _mark_up(self, view: NeuronView) -> None:
        view.last_seen = time.time()
        view.missed = 0
        if not view.up:
            view.up = True
            view.error = None
            self.metrics.neuron_up.labels(view.name).set(1)
            self._dirty_neurons.add(view.name)
            self._catalogue_dirty = True
            self._log("neuron_up", f"neuron {view.name} is up", neuron=view.name)

    def _set_available(self, view: NeuronView, available: list[ModelFile]) -> None:
        files = {f.id: f for f in available}
        if files != view.available:
            view.available = files
            self._catalogue_dirty = True

    def _upsert(self, neuron: str, loaded: LoadedModel) -> PlacementRecord:
        record = self.placements.get((loaded.id, neuron))
        if record is None:
            record = self._new_record(loaded.id, neuron, loaded.state)
            if loaded.last_used_at:
                record.last_used = loaded.last_used_at
        was = record.state
        record.apply(loaded)
        self._dirty.add(record.key)
        if record.state == "loaded" and was != "loaded":
            self._learn(record)
            self._settle_load_actions(record)
            self._catalogue_dirty = True
        elif record.state == "loaded" and record.memory_bytes > (
            self.store.learned(record.model, self._device_kind(self.neurons[neuron])) or 0
        ):
            self._learn(record)
        return record

    def _on_event(self, name: str, event: NeuronEvent) -> None:
        view = self.neurons.get(name)
        if view is None:
            return
        view.last_seen = time.time()
        if isinstance(event, StatusEvent):
            self._on_status(name, event.status, time.monotonic())
        elif isinstance(event, ModelEvent):
            if not view.up:
                return
            record = self._upsert(name, event.model)
            if record.state == "loaded":
                self._advance(record.model)
        elif isinstance(event, ModelRemovedEvent):
            record = self.placements.get((event.id, name))
            if record is None:
                return
            if record.effect in ("loading", "evicting"):
                record.state = "failed"
                record.error = event.message
                record.touch()
                return  # the load effect reports and decides what next
            if event.reason != "unloaded":
                self._log(
                    "error",
                    f"{event.id} on {name} {event.reason}: {event.message or 'no detail'}",
                    level="error",
                    model=event.id,
                    neuron=name,
                )
            if record.effect == "unloading":
                self._finish_unload(record, None)
            else:
                self._drop(record)
                self._advance_all()
        elif isinstance(event, DevicesEvent):
            view.devices = list(event.devices)
            self.metrics.set_devices(name, view.devices)
            self._dirty_neurons.add(name)
        elif isinstance(event, AvailableEvent):
            self._set_available(view, event.available)
            self._advance_all()
        elif isinstance(event, RequestEvent):
            pass  # the gateway measures its own requests

    def _on_unhealthy(self, name: str, error: str, definitive: bool) -> None:
        view = self.neurons.get(name)
        if view is None:
            return
        view.missed += 1
        view.error = error
        if not view.up:
            return
        if not definitive and view.missed < self.config.health.missed_beats:
            return
        view.up = False
        self.metrics.neuron_up.labels(name).set(0)
        self._dirty_neurons.add(name)
        self._catalogue_dirty = True
        self._log(
            "neuron_down",
            f"neuron {name} is down: {error}",
            level="warning",
            neuron=name,
        )
        for record in [r for r in self.placements.values() if r.neuron == name]:
            for future in record.action_waiters:
                if not future.done():
                    future.set_exception(
                        CortexError(503, f"Neuron '{name}' went down: {error}", code="neuron_down")
                    )
            record.action_waiters.clear()
            self._drop(record)
        self._advance_all()

    # ------------------------------------------------------------------ fleet actions

    def _on_fleet_load(self, message: _FleetLoad) -> None:
        model, neuron = message.model, message.neuron

        def refuse(error: CortexError) -> None:
            message.started.set_exception(error)
            message.done.cancel()

        if not self.model_known(model):
            return refuse(self.unknown_model_error(model))
        if neuron is not None and neuron not in self.neurons:
            known = ", ".join(self.neurons)
            text = f"There is no neuron named '{neuron}' (neurons: {known})."
            return refuse(CortexError(404, text, code="neuron_not_found"))
        existing = [r for r in self.placements_of(model) if neuron is None or r.neuron == neuron]
        for record in existing:
            if record.state == "loaded" and record.effect is None:
                message.started.set_result(record.neuron)
                message.done.set_result(
                    ActionResult(
                        ok=True,
                        action="load",
                        model=model,
                        message=f"{model} is already loaded on {record.neuron}",
                        placements=[self.placement_wire(record)],
                    )
                )
                return
            if record.state == "loading":
                record.wanted = True
                record.action_waiters.append(message.done)
                message.started.set_result(record.neuron)
                return
            if record.effect == "unloading":
                text = (
                    f"{model} is being unloaded from {record.neuron}; load it again once that "
                    "finishes."
                )
                return refuse(CortexError(409, text, code="model_unloading"))
        decision = self._plan(model, only=neuron, device=message.device)
        if isinstance(decision, Unplaceable):
            status = 409 if decision.wait else 503
            code = f"model_unavailable_{decision.reason}"
            return refuse(CortexError(status, decision.message, code=code))
        record = self._start_placement(model, decision, wanted=True)
        record.action_waiters.append(message.done)
        message.started.set_result(record.neuron)

    def _on_fleet_unload(self, message: _FleetUnload) -> None:
        model = message.model
        records = [
            r
            for r in self.placements_of(model)
            if message.neuron is None or r.neuron == message.neuron
        ]
        if not records:
            where = f" on {message.neuron}" if message.neuron else ""
            message.done.set_exception(
                CortexError(
                    409, f"{model} is not loaded{where}; nothing to unload.", code="not_loaded"
                )
            )
            return
        for record in records:
            if record.state == "loading" or record.effect in ("loading", "evicting"):
                message.done.set_exception(
                    CortexError(
                        409,
                        f"{model} is still loading on {record.neuron}; unload it once it is "
                        "loaded.",
                        code="model_loading",
                    )
                )
                return
            if record.in_flight and not message.force:
                message.done.set_exception(
                    CortexError(
                        409,
                        f"{model} on {record.neuron} has {record.in_flight} request(s) in flight; "
                        "retry when they finish, or pass force=true to cut them off.",
                        code="model_busy",
                    )
                )
                return
        futures = []
        for record in records:
            if record.effect == "unloading":
                future = asyncio.get_running_loop().create_future()
                record.action_waiters.append(future)
                futures.append(future)
                continue
            future = asyncio.get_running_loop().create_future()
            record.action_waiters.append(future)
            futures.append(future)
            self._begin_unload(record, "action", "asked through the fleet API")
            self._spawn(self._unload_and_report(record))

        async def gather() -> None:
            results = await asyncio.gather(*futures, return_exceptions=True)
            texts = [
                r.message if isinstance(r, ActionResult | CortexError) else str(r) for r in results
            ]
            ok = all(isinstance(r, ActionResult) and r.ok for r in results)
            if not message.done.done():
                message.done.set_result(
                    ActionResult(ok=ok, action="unload", model=model, message="; ".join(texts))
                )

        self._spawn(gather())

    async def _unload_and_report(self, record: PlacementRecord) -> None:
        try:
            await self.effects.unload(record.neuron, record.model)
        except CortexError as exc:
            self._post(_Evicted(record.model, record.neuron, record.generation, exc))
        else:
            self._post(_Evicted(record.model, record.neuron, record.generation, None))

    def _on_pin(self, message: _Pin) -> None:
        model, pinned = message.model, message.pinned
        action = "pin" if pinned else "unpin"
        if not self.model_known(model):
            message.done.set_exception(self.unknown_model_error(model))
            return
        if not pinned and self.pin_source(model) == "config":
            message.done.set_exception(
                CortexError(
                    409,
                    f"{model} is pinned in models.toml (pin = true); remove it there and restart "
                    "the gateway to unpin it.",
                    code="pinned_in_config",
                )
            )
            return
        try:
            changed = self.store.set_pin(model, pinned)
        except OSError as exc:
            message.done.set_exception(
                CortexError(
                    500,
                    f"Could not save the pin to {self.store.path}: {exc}; check that the "
                    "gateway can write there (gateway.state_file).",
                    code="state_not_saved",
                )
            )
            return
        if changed:
            self._log(action, f"{action}ned {model}", model=model)  # type: ignore[arg-type]
            self._mark_model(model)
            self._catalogue_dirty = True
        message.done.set_result(
            ActionResult(
                ok=True,
                action=action,  # type: ignore[arg-type]
                model=model,
                message=f"{model} is {'pinned' if pinned else 'not pinned'}"
                + ("" if changed else " (no change)"),
                placements=[self.placement_wire(r) for r in self.placements_of(model)],
            )
        )

    def _preload_pins(self) -> None:
        for profile in self.settings.profiles.values():
            if not profile.pin or profile.id in self._preloaded:
                continue
            if self.placements_of(profile.id):
                self._preloaded.add(profile.id)
                continue
            decision = self._plan(profile.id)
            if isinstance(decision, Plan):
                self._preloaded.add(profile.id)
                self._start_placement(profile.id, decision, wanted=True, reason="pin_preload")
            elif decision.reason in ("memory", "not_allowed"):
                self._preloaded.add(profile.id)
                self._log(
                    "error",
                    f"cannot preload pinned {profile.id}: {decision.message}",
                    level="warning",
                    model=profile.id,
                )

    # ------------------------------------------------------------------ timers

    def _on_sweep(self) -> None:
        ttl = self.config.eviction.idle_ttl_s
        now = time.time()
        if ttl > 0:
            for record in list(self.placements.values()):
                if record.state != "loaded" or record.effect is not None:
                    continue
                resident = self._resident(record, record.device or "", record.memory_bytes)
                if not resident.evictable or now - record.last_used < ttl:
                    continue
                idle = now - record.last_used
                self._begin_unload(record, "idle_ttl", f"idle for {idle:.0f}s")
                self._spawn(self._unload_and_report(record))
        for view in self.neurons.values():
            records = [r for r in self.placements.values() if r.neuron == view.name]
            if not view.up or any(r.effect is not None or r.state != "loaded" for r in records):
                continue  # mid-transition, reservations overlap the memory being freed
            for device in view.devices:
                room = self._device_room(view, device)
                over = room.capacity - room.committed
                if over >= 0:
                    continue
                victims = choose_evictions(0, over, room.residents, self.config.eviction.strategy)
                for victim in victims or []:
                    record = self.placements[(victim.model, victim.neuron)]
                    self._begin_unload(record, "over_budget", f"{device.id} is over its budget")
                    self._spawn(self._unload_and_report(record))
        if self.waiting:
            self._advance_all()

    def _on_flush(self) -> None:
        now = time.monotonic()
        if now - self._last_heartbeat >= HEARTBEAT_S:
            self._last_heartbeat = now
            for record in self.placements.values():
                if record.in_flight or record.state in ("loading", "unloading"):
                    self._dirty.add(record.key)
        for key in self._removed:
            self.hub.publish(PlacementRemoved(model=key[0], neuron=key[1]))
        self._removed.clear()
        for key in self._dirty:
            record = self.placements.get(key)
            if record is not None:
                self.hub.publish(PlacementUpdate(self.placement_wire(record)))
        self._dirty.clear()
        for name in self._dirty_neurons:
            self.hub.publish(NeuronUpdate(self.neurons[name].to_wire()))
        self._dirty_neurons.clear()
        if self._catalogue_dirty:
            self._catalogue_dirty = False
            self.hub.publish(CatalogueUpdate(self.catalogue()))

    # ------------------------------------------------------------------ helpers

    def _mark_model(self, model: str) -> None:
        for record in self.placements_of(model):
            self._dirty.add(record.key)

    def _log(
        self,
        kind: LogKind,
        message: str,
        *,
        level: str = "info",
        model: str | None = None,
        neuron: str | None = None,
        reason: str | None = None,
    ) -> None:
        getattr(log, level if level != "warning" else "warning")(message)
        entry = LogEntry(
            time=time.time(),
            kind=kind,
            message=message,
            level=level,  # type: ignore[arg-type]
            model=model,
            neuron=neuron,
            reason=reason,
        )
        self.hub.publish(LogEvent(entry))
