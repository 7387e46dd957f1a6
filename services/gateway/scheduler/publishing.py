"""What the fleet event stream hears: the changes handlers mark, flushed a few times a second.

Handlers add keys to ``Fleet.dirty`` / ``removed`` / ``dirty_neurons`` and set
``catalogue_dirty``; the ticker in core.py posts ``Flush`` when something is marked, and
``on_flush`` publishes each changed placement, neuron and the catalogue once. Placements
still moving (requests in flight, loading, unloading) are republished once a second so
clients see their figures advance. Log lines go out at once.
"""

from __future__ import annotations

import logging
import time

from cortex.common.fleet import (
    CatalogueUpdate,
    LogEntry,
    LogEvent,
    LogKind,
    NeuronUpdate,
    PlacementRemoved,
    PlacementUpdate,
)
from cortex.services.gateway.scheduler.fleet import Fleet

log = logging.getLogger("cortex.gateway.scheduler")

FLUSH_INTERVAL_S = 0.25
HEARTBEAT_S = 1.0


def needs_flush(s: Fleet) -> bool:
    """Read-only check (no decision depends on it) so an idle gateway stays quiet."""
    if s.dirty or s.removed or s.dirty_neurons or s.catalogue_dirty:
        return True
    if time.monotonic() - s.last_heartbeat < HEARTBEAT_S:
        return False
    return any(r.in_flight or r.state in ("loading", "unloading") for r in s.placements.values())


def on_flush(s: Fleet) -> None:
    now = time.monotonic()
    if now - s.last_heartbeat >= HEARTBEAT_S:
        s.last_heartbeat = now
        for record in s.placements.values():
            if record.in_flight or record.state in ("loading", "unloading"):
                s.dirty.add(record.key)
    for key in s.removed:
        s.hub.publish(PlacementRemoved(model=key[0], neuron=key[1]))
    s.removed.clear()
    for key in s.dirty:
        changed = s.placements.get(key)
        if changed is not None:
            s.hub.publish(PlacementUpdate(s.placement_wire(changed)))
    s.dirty.clear()
    for name in s.dirty_neurons:
        s.hub.publish(NeuronUpdate(s.neurons[name].to_wire()))
    s.dirty_neurons.clear()
    if s.catalogue_dirty:
        s.catalogue_dirty = False
        s.hub.publish(CatalogueUpdate(s.catalogue()))


def mark_model(s: Fleet, model: str) -> None:
    for record in s.placements_of(model):
        s.dirty.add(record.key)


def log_event(
    s: Fleet,
    kind: LogKind,
    message: str,
    *,
    level: str = "info",
    model: str | None = None,
    neuron: str | None = None,
    reason: str | None = None,
) -> None:
    """Log ``message`` here and publish it to the fleet event stream's log."""
    getattr(log, level)(message)
    entry = LogEntry(
        time=time.time(),
        kind=kind,
        message=message,
        level=level,  # type: ignore[arg-type]
        model=model,
        neuron=neuron,
        reason=reason,
    )
    s.hub.publish(LogEvent(entry))
