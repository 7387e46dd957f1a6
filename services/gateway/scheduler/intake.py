"""What neurons tell the scheduler: status polls, events, and missed heartbeats.

Neurons are the source of truth: a status or event overwrites the figures here, unless
the scheduler has changed the record since the status was asked for (``sent_at``). A
neuron that misses ``health.missed_beats`` beats (or refuses a request's connection) is
down: its placements are dropped and their fleet actions fail with 503.
"""

from __future__ import annotations

import time

from cortex.common.errors import CortexError
from cortex.common.neuron import (
    AvailableEvent,
    DevicesEvent,
    LoadedModel,
    ModelEvent,
    ModelFile,
    ModelRemovedEvent,
    NeuronEvent,
    NodeStatus,
    RequestEvent,
    StatusEvent,
)
from cortex.services.gateway.scheduler import actions, eviction, leasing, loading
from cortex.services.gateway.scheduler.fleet import Fleet
from cortex.services.gateway.scheduler.publishing import log_event
from cortex.services.gateway.state import NeuronView, PlacementRecord


def on_status(s: Fleet, name: str, status: NodeStatus, sent_at: float) -> None:
    view = s.neurons.get(name)
    if view is None:
        return
    mark_up(s, view)
    view.devices = list(status.devices)
    view.backends = list(status.backends)
    view.version = status.version
    s.metrics.set_devices(name, view.devices)
    set_available(s, view, status.available)
    listed = set()
    for loaded in status.loaded:
        listed.add(loaded.id)
        record = s.placements.get((loaded.id, name))
        if record is not None and record.changed_at > sent_at:
            continue  # we know something newer than this status
        upsert(s, name, loaded)
    for record in [r for r in s.placements.values() if r.neuron == name]:
        if record.model in listed or record.effect is not None or record.changed_at > sent_at:
            continue
        log_event(
            s,
            "info",
            f"{record.model} is no longer loaded on {name}",
            model=record.model,
            neuron=name,
        )
        s.drop(record)
    s.dirty_neurons.add(name)
    actions.preload_pins(s)
    leasing.advance_all(s)


def mark_up(s: Fleet, view: NeuronView) -> None:
    view.last_seen = time.time()
    view.missed = 0
    if not view.up:
        view.up = True
        view.error = None
        s.metrics.neuron_up.labels(view.name).set(1)
        s.dirty_neurons.add(view.name)
        s.catalogue_dirty = True
        log_event(s, "neuron_up", f"neuron {view.name} is up", neuron=view.name)


def set_available(s: Fleet, view: NeuronView, available: list[ModelFile]) -> None:
    files = {f.id: f for f in available}
    if files != view.available:
        view.available = files
        s.catalogue_dirty = True


def upsert(s: Fleet, neuron: str, loaded: LoadedModel) -> PlacementRecord:
    """Take the neuron's view of one placement, creating the record if it is new to us."""
    record = s.placements.get((loaded.id, neuron))
    before = None
    if record is None:
        record = s.new_record(loaded.id, neuron, loaded.state)
        if loaded.last_used_at:
            record.last_used = loaded.last_used_at
    else:
        before = s.placement_wire(record)
    was = record.state
    record.apply(loaded)
    # Every status poll brings every placement: only one that changed is published, so
    # an idle fleet's event stream stays quiet.
    if before is None or s.placement_wire(record) != before:
        s.dirty.add(record.key)
    if record.state == "loaded" and was != "loaded":
        loading.learn(s, record)
        loading.settle_load_actions(s, record)
        s.catalogue_dirty = True
    elif record.state == "loaded" and record.memory_bytes > (
        s.store.learned(record.model, s.device_kind(s.neurons[neuron])) or 0
    ):
        loading.learn(s, record)
    return record


def on_event(s: Fleet, name: str, event: NeuronEvent) -> None:
    view = s.neurons.get(name)
    if view is None:
        return
    view.last_seen = time.time()
    if isinstance(event, StatusEvent):
        on_status(s, name, event.status, time.monotonic())
    elif isinstance(event, ModelEvent):
        if not view.up:
            return
        record = upsert(s, name, event.model)
        if record.state == "loaded":
            leasing.advance(s, record.model)
    elif isinstance(event, ModelRemovedEvent):
        model_removed(s, name, event)
    elif isinstance(event, DevicesEvent):
        view.devices = list(event.devices)
        s.metrics.set_devices(name, view.devices)
        s.dirty_neurons.add(name)
    elif isinstance(event, AvailableEvent):
        set_available(s, view, event.available)
        leasing.advance_all(s)
    elif isinstance(event, RequestEvent):
        # The gateway measures its own requests; the neuron's queue wait feeds replicas.
        wait_s = event.stats.queue_ms / 1000
        seen = s.queue_waits.get(event.stats.model)
        if seen is None or wait_s >= seen[1] or time.monotonic() - seen[0] > 1.0:
            s.queue_waits[event.stats.model] = (time.monotonic(), wait_s)


def model_removed(s: Fleet, name: str, event: ModelRemovedEvent) -> None:
    """The neuron no longer holds ``event.id``: unloaded, failed, or its worker died."""
    record = s.placements.get((event.id, name))
    if record is None:
        return
    if record.effect in ("loading", "evicting"):
        record.state = "failed"
        record.error = event.message
        record.touch()
        return  # the load effect reports and decides what next
    if event.reason != "unloaded":
        log_event(
            s,
            "error",
            f"{event.id} on {name} {event.reason}: {event.message or 'no detail'}",
            level="error",
            model=event.id,
            neuron=name,
        )
    if record.effect == "unloading":
        eviction.finish_unload(s, record, None)
    else:
        s.drop(record)
        leasing.advance_all(s)


def on_unhealthy(s: Fleet, name: str, error: str, definitive: bool) -> None:
    view = s.neurons.get(name)
    if view is None:
        return
    view.missed += 1
    view.error = error
    if not view.up:
        return
    if not definitive and view.missed < s.config.health.missed_beats:
        return
    view.up = False
    s.metrics.neuron_up.labels(name).set(0)
    s.dirty_neurons.add(name)
    s.catalogue_dirty = True
    log_event(s, "neuron_down", f"neuron {name} is down: {error}", level="warning", neuron=name)
    # Its placements are dropped below, so requests still on it would hold on unaccounted
    # until the read timeout: they end now (before their first byte, a retry elsewhere).
    s.effects.abort(name, f"neuron {name} is down: {error}")
    for record in [r for r in s.placements.values() if r.neuron == name]:
        for future in record.action_waiters:
            if not future.done():
                future.set_exception(
                    CortexError(503, f"Neuron '{name}' went down: {error}", code="neuron_down")
                )
        record.action_waiters.clear()
        s.drop(record)
    leasing.advance_all(s)
