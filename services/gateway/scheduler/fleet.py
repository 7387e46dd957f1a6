"""The scheduler's state, declared in one place, and the synchronous reads over it.

Only the scheduler task changes this state (through the handler modules). The reads
see a consistent instant (the loop is single-threaded); routes use them, and they never
feed a decision outside the scheduler.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import Any

from cortex.common.errors import CortexError
from cortex.common.fleet import CatalogueEntry, FleetSnapshot, Placement, ReplicaStatus
from cortex.common.neuron import ModelFile
from cortex.services.gateway.affinity import AffinityTable
from cortex.services.gateway.estimate import context_for, estimate
from cortex.services.gateway.hub import EventHub
from cortex.services.gateway.metrics import GatewayMetrics
from cortex.services.gateway.scaling import (
    Limits,
    Pressure,
    Replica,
    count,
    pressure_of,
    resolve_range,
)
from cortex.services.gateway.scheduler.effects import Effects
from cortex.services.gateway.settings import Settings
from cortex.services.gateway.state import NeuronView, PlacementRecord, Waiter
from cortex.services.gateway.store import StateStore

log = logging.getLogger("cortex.gateway.scheduler")


class Fleet:
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
        self.waiting: dict[str, list[Waiter]] = {}  # per model, oldest first
        self.generation = 0  # the last one handed to a new record
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.effect_tasks: set[asyncio.Task] = set()
        # What changed since the last flush (publishing.py sends it to the event hub).
        self.dirty: set[tuple[str, str]] = set()
        self.removed: set[tuple[str, str]] = set()
        self.dirty_neurons: set[str] = set()
        self.catalogue_dirty = False
        self.last_heartbeat = 0.0
        self.preloaded: set[str] = set()  # pinned models whose preload was tried
        self.blocked_note: dict[str, str] = {}  # the last "waiting for room" line logged
        self.affinity = AffinityTable()  # conversation prefixes per placement
        # Replica scaling (replicas.py): when each model's queue pressure began (or
        # ended), the
        # longest neuron queue wait recently seen (when, seconds), and the last
        # decision not taken (logged once; while set the model wants one more replica).
        self.pressure_since: dict[str, float] = {}
        self.calm_since: dict[str, float] = {}
        self.queue_waits: dict[str, tuple[float, float]] = {}
        self.replica_notes: dict[str, str] = {}
        self.last_scale_up: dict[str, float] = {}
        for name in self.neurons:
            metrics.neuron_up.labels(name).set(0)

    # ------------------------------------------------------------------ the inbox

    def post(self, message: Any) -> None:
        self.inbox.put_nowait(message)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run an effect (effects.py) that reports back with a message."""
        task = asyncio.create_task(coro)
        self.effect_tasks.add(task)
        task.add_done_callback(self.effect_tasks.discard)

    # ------------------------------------------------------------------ placements table

    def new_record(self, model: str, neuron: str, state: str, **kwargs: Any) -> PlacementRecord:
        self.generation += 1
        record = PlacementRecord(model, neuron, state, self.generation, **kwargs)
        self.placements[record.key] = record
        self.dirty.add(record.key)
        self.removed.discard(record.key)
        self.catalogue_dirty = True
        return record

    def drop(self, record: PlacementRecord) -> None:
        if self.placements.get(record.key) is record:
            del self.placements[record.key]
            self.affinity.forget(record.key)
            self.dirty.discard(record.key)
            self.removed.add(record.key)
            self.catalogue_dirty = True

    # ------------------------------------------------------------------ reads

    def pinned(self, model: str) -> bool:
        return self.pin_source(model) is not None

    def pin_source(self, model: str) -> str | None:
        profile = self.settings.profiles.get(model)
        if profile is not None and profile.pin:
            return "config"
        if model in self.store.state.pins:
            return "api"
        return None

    def replica_limits(self, model: str) -> tuple[Limits, str]:
        """The model's replica range and thresholds, and where the range comes from."""
        section = self.config.replicas
        profile = self.settings.profiles.get(model)
        configured = (
            (profile.replicas.min, profile.replicas.max) if profile and profile.replicas else None
        )
        api = self.store.state.replicas.get(model)
        low, high, source = resolve_range(
            (section.min, section.max), configured, (api.min, api.max) if api else None
        )
        limits = Limits(
            low, high, section.queue_depth, section.queue_wait_s, section.window_s, section.idle_s
        )
        return limits, source

    def claimed_paths(self) -> set[str]:
        return {p.neuron_path for p in self.settings.profiles.values() if p.neuron_path != p.id}

    def model_ids(self) -> list[str]:
        ids: dict[str, None] = dict.fromkeys(self.settings.profiles)
        claimed = self.claimed_paths()
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
        if model in self.claimed_paths():
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

    def file(self, view: NeuronView, model: str) -> ModelFile | None:
        profile = self.settings.profiles.get(model)
        return view.has_file(profile.neuron_path if profile else model)

    def allowed(self, view: NeuronView, model: str) -> bool:
        profile = self.settings.profiles.get(model)
        return profile is None or not profile.neurons or view.name in profile.neurons

    def device_kind(self, view: NeuronView) -> str:
        return "cuda" if any(d.kind == "cuda" for d in view.devices) else "cpu"

    def estimate_for(self, view: NeuronView, model: str) -> int | None:
        file = self.file(view, model)
        if file is None:
            return None
        kind = self.device_kind(view)
        profile = self.settings.profiles.get(model)
        return estimate(file, profile, kind, self.store.learned(model, kind))  # type: ignore[arg-type]

    def catalogue(self) -> list[CatalogueEntry]:
        entries = []
        for model in self.model_ids():
            profile = self.settings.profiles.get(model)
            available = [
                v.name
                for v in self.neurons.values()
                if self.file(v, model) is not None and self.allowed(v, model)
            ]
            loaded = [r.neuron for r in self.placements_of(model) if r.state == "loaded"]
            memory = None
            for view in self.neurons.values():
                if view.name in available and view.up:
                    memory = self.estimate_for(view, model)
                    break
            max_seq = self.context_length(model)
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
                    replicas=self.replica_status(model),
                )
            )
        return entries

    def replica_views(self, model: str) -> list[Replica]:
        """The model's placements as scaling.py sees them."""
        now = time.time()
        return [
            Replica(
                neuron=r.neuron,
                state=r.state,
                in_flight=r.in_flight,
                concurrency=r.max_concurrency,
                neuron_queued=r.neuron_queued,
                # A replica is idle from its last request, or from its load when it has
                # not served yet: a new one gets a whole window.
                idle_s=0.0 if r.in_flight else max(0.0, now - max(r.last_used, r.loaded_at or 0)),
                busy=bool(r.in_flight or r.action_waiters or r.effect or self.waiting.get(model)),
                scaled=r.scaled,
            )
            for r in self.placements_of(model)
        ]

    def replica_pressure(self, model: str, replicas: list[Replica], limits: Limits) -> Pressure:
        seen = self.queue_waits.get(model)
        recent = seen is not None and time.monotonic() - seen[0] <= limits.window_s
        return pressure_of(replicas, self.queued(model), seen[1] if seen and recent else 0.0)

    def replica_status(self, model: str) -> ReplicaStatus:
        limits, source = self.replica_limits(model)
        replicas = self.replica_views(model)
        pressure = self.replica_pressure(model, replicas, limits)
        wanted = count(replicas) + (1 if model in self.replica_notes else 0)
        since = self.pressure_since.get(model)
        return ReplicaStatus(
            min=limits.min,
            max=limits.max,
            source=source,  # type: ignore[arg-type]
            wanted=min(max(wanted, limits.min), limits.max),
            actual=sum(1 for r in replicas if r.state == "loaded"),
            queue_depth=pressure.depth,
            queue_wait_s=pressure.wait_s,
            pressure_since=None if since is None else time.time() - (time.monotonic() - since),
        )

    def context_length(self, model: str) -> int | None:
        """The context a client gets: a loaded placement's, else what a load would get
        (the profile's max_seq_len, never above the model's own; without one, the
        model's own capped to the neuron's default), as /fleet's placements show it."""
        loaded = [r.max_seq_len for r in self.placements_of(model) if r.state == "loaded"]
        if any(loaded):
            return max(loaded)
        profile = self.settings.profiles.get(model)
        for view in self.neurons.values():
            file = self.file(view, model)
            if file is not None:
                limit = context_for(file, profile)
                return min(limit, file.max_seq_len) if file.max_seq_len else limit
        return profile.max_seq_len if profile else None

    def queued(self, model: str) -> int:
        return len(self.waiting.get(model, ()))

    def placement_wire(self, record: PlacementRecord) -> Placement:
        queued = self.queued(record.model) if record.state == "loading" else 0
        return record.to_wire(self.pinned(record.model), queued, self.affinity.size(record.key))

    def snapshot(self) -> FleetSnapshot:
        return FleetSnapshot(
            time=time.time(),
            neurons=[v.to_wire() for v in self.neurons.values()],
            placements=[self.placement_wire(r) for r in self.placements.values()],
            catalogue=self.catalogue(),
        )
