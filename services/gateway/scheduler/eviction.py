"""When a model leaves a neuron, and how its unload ends.

A loaded, idle, unpinned model is unloaded:

* to make room for another model's load (planned by policy.py, started in loading.py);
* after a load ran out of memory, to retry it once (loading.py);
* when idle longer than ``eviction.idle_ttl_s`` (``on_sweep``);
* when a device is over its budget (``on_sweep``; the eviction strategy picks whom);
* when the fleet API asks (actions.py), busy or not with ``force``.

Each path calls ``begin_unload`` (state and effect ``unloading``) and ends in
``on_evicted``: gone (or 404: already gone) drops the placement; an error keeps it loaded.
"""

from __future__ import annotations

import time

from cortex.common.errors import CortexError
from cortex.common.fleet import ActionResult, LogKind
from cortex.services.gateway.policy import choose_evictions
from cortex.services.gateway.scheduler import leasing, planning
from cortex.services.gateway.scheduler.effects import unload_and_report
from cortex.services.gateway.scheduler.fleet import Fleet
from cortex.services.gateway.scheduler.messages import Evicted
from cortex.services.gateway.scheduler.publishing import log_event
from cortex.services.gateway.state import PlacementRecord


def begin_unload(s: Fleet, record: PlacementRecord, reason: str, why: str) -> None:
    record.state = "unloading"
    record.effect = "unloading"
    record.touch()
    s.dirty.add(record.key)
    s.metrics.evictions.labels(record.model, reason).inc()
    kind: LogKind = "unload" if reason == "action" else "evict"
    log_event(
        s,
        kind,
        f"unloading {record.model} from {record.neuron} ({reason}: {why})",
        model=record.model,
        neuron=record.neuron,
        reason=reason,
    )


def unload(s: Fleet, record: PlacementRecord, reason: str, why: str) -> None:
    """Unload ``record`` on its own (not to make room for a load)."""
    begin_unload(s, record, reason, why)
    s.spawn(unload_and_report(s, record))


def on_evicted(s: Fleet, message: Evicted) -> None:
    record = s.placements.get((message.model, message.neuron))
    if record is None or record.generation != message.generation:
        return
    if message.error is None or message.error.status == 404:
        finish_unload(s, record, None)
    else:
        record.effect = None
        record.state = "loaded"
        record.touch()
        s.dirty.add(record.key)
        log_event(
            s,
            "error",
            f"unloading {record.model} from {record.neuron} failed: {message.error.message}",
            level="error",
            model=record.model,
            neuron=record.neuron,
        )
        finish_unload(s, record, message.error, keep=True)


def finish_unload(
    s: Fleet, record: PlacementRecord, error: CortexError | None, keep: bool = False
) -> None:
    if not keep:
        s.drop(record)
    result = ActionResult(
        ok=error is None,
        action="unload",
        model=record.model,
        message=(
            f"unloaded {record.model} from {record.neuron}"
            if error is None
            else f"unloading {record.model} from {record.neuron} failed: {error.message}"
        ),
    )
    for future in record.action_waiters:
        if not future.done():
            future.set_result(result)
    record.action_waiters.clear()
    if s.waiting:
        leasing.advance_all(s)


def on_sweep(s: Fleet) -> None:
    """The periodic pass: unload what sat idle past its TTL, then what is over budget."""
    ttl = s.config.eviction.idle_ttl_s
    now = time.time()
    if ttl > 0:
        for record in list(s.placements.values()):
            if record.state != "loaded" or record.effect is not None:
                continue
            resident = planning.resident(s, record, record.device or "", record.memory_bytes)
            if not resident.evictable or now - record.last_used < ttl:
                continue
            unload(s, record, "idle_ttl", f"idle for {now - record.last_used:.0f}s")
    for view in s.neurons.values():
        records = [r for r in s.placements.values() if r.neuron == view.name]
        if not view.up or any(r.effect is not None or r.state != "loaded" for r in records):
            continue  # mid-transition, reservations overlap the memory being freed
        for device in view.devices:
            room = planning.device_room(s, view, device)
            over = room.capacity - room.committed
            if over >= 0:
                continue
            victims = choose_evictions(0, over, room.residents, s.config.eviction.strategy)
            for victim in victims or []:
                record = s.placements[(victim.model, victim.neuron)]
                unload(s, record, "over_budget", f"{device.id} is over its budget")
    if s.waiting:
        leasing.advance_all(s)
