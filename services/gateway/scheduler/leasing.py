"""Requests and their model's queue: grant a lease, queue, start a load, or refuse.

A request asks with ``Acquire``; it gets a lease on the loaded placement with the fewest
requests in flight for its engine's concurrency, or waits in ``Fleet.waiting`` for the
one load of its model. Every waiter ends once: granted, failed, or abandoned by its
client. ``advance`` is where a queue moves, after anything that may let it (a load, an
unload, a release, a status).
"""

from __future__ import annotations

import logging
import time

from cortex.common.errors import CortexError
from cortex.services.gateway.affinity import Candidate, choose
from cortex.services.gateway.policy import Plan
from cortex.services.gateway.scheduler import loading, planning
from cortex.services.gateway.scheduler.fleet import Fleet
from cortex.services.gateway.scheduler.publishing import log_event, mark_model
from cortex.services.gateway.state import Lease, Waiter

log = logging.getLogger("cortex.gateway.scheduler")


def on_acquire(s: Fleet, waiter: Waiter) -> None:
    lease = grant(s, waiter)
    if lease is not None:
        waiter.grant(lease)
        return
    s.waiting.setdefault(waiter.model, []).append(waiter)
    s.metrics.queued.labels(waiter.model).set(s.queued(waiter.model))
    advance(s, waiter.model)
    if waiter in s.waiting.get(waiter.model, ()):
        waiter.queue()
        mark_model(s, waiter.model)


def grant(s: Fleet, waiter: Waiter) -> Lease | None:
    """A lease on the placement affinity.choose picks (its prefix's, else least in flight)."""
    records = {r.neuron: r for r in s.placements_of(waiter.model)}
    prefix = waiter.prefix if s.config.gateway.affinity else None
    candidates = [
        Candidate(
            neuron=r.neuron,
            in_flight=r.in_flight,
            concurrency=r.max_concurrency,
            depth=s.affinity.depth(r.key, prefix) if prefix else -1,
            eligible=r.state == "loaded"
            and r.effect != "unloading"
            and r.neuron not in waiter.exclude
            and s.neurons[r.neuron].up,
        )
        for r in records.values()
    ]
    choice = choose(candidates, prefix)
    if choice is None:
        return None
    best = records[choice[0]]
    if prefix is not None:
        s.affinity.remember(best.key, prefix)
    s.metrics.routes.labels(best.model, choice[1].split(":")[0]).inc()
    best.in_flight += 1
    best.last_used = time.time()
    s.dirty.add(best.key)
    s.metrics.in_flight.labels(best.model, best.neuron).inc()
    return Lease(best.model, best.neuron, best.generation, waiter.request_id, choice[1])


def on_release(s: Fleet, lease: Lease) -> None:
    record = s.placements.get((lease.model, lease.neuron))
    s.metrics.in_flight.labels(lease.model, lease.neuron).dec()
    if record is None or record.generation != lease.generation:
        return
    record.in_flight = max(0, record.in_flight - 1)
    record.last_used = time.time()
    s.dirty.add(record.key)
    if record.in_flight == 0 and s.waiting:
        advance_all(s)


def on_abandon(s: Fleet, waiter: Waiter) -> None:
    if remove_waiter(s, waiter):
        mark_model(s, waiter.model)
        log.info("request %s left while waiting for %s", waiter.request_id, waiter.model)
    elif not waiter.consumed:
        lease = waiter.lease
        if lease is not None:
            on_release(s, lease)
    for future in (waiter.decision, waiter.granted):
        if not future.done():
            future.cancel()
        elif not future.cancelled():
            future.exception()  # retrieved: no "never retrieved" warning


def remove_waiter(s: Fleet, waiter: Waiter) -> bool:
    """Take ``waiter`` out of its model's queue; False when it was not queued."""
    queue = s.waiting.get(waiter.model)
    queued = queue is not None and waiter in queue
    if queue is not None and queued:
        queue.remove(waiter)
        if not queue:
            del s.waiting[waiter.model]
    s.metrics.queued.labels(waiter.model).set(s.queued(waiter.model))
    return queued


def fail_waiters(s: Fleet, model: str, error: CortexError) -> None:
    for waiter in list(s.waiting.get(model, ())):
        remove_waiter(s, waiter)
        waiter.fail(error)
    mark_model(s, model)


def advance_all(s: Fleet) -> None:
    order = sorted(s.waiting.items(), key=lambda item: item[1][0].since if item[1] else 0)
    for model, _ in order:
        advance(s, model)


def advance(s: Fleet, model: str) -> None:
    """Serve, keep waiting, start a load for, or refuse the requests waiting for ``model``."""
    queue = s.waiting.get(model)
    if not queue:
        return
    # (1) a loaded placement with room: grant in arrival order
    for waiter in list(queue):
        lease = grant(s, waiter)
        if lease is not None:
            remove_waiter(s, waiter)
            waiter.grant(lease)
    queue = s.waiting.get(model)
    if not queue:
        mark_model(s, model)
        return
    # (2) a load or unload of it is under way on a live neuron: its end advances again
    active = [
        r
        for r in s.placements_of(model)
        if r.state in ("loading", "unloading") or r.effect is not None
    ]
    if any(s.neurons[r.neuron].up for r in active):
        return
    # (3) room now, perhaps after evictions: start the one load
    exclude = frozenset.intersection(*(w.exclude for w in queue))
    decision = planning.plan(s, model, exclude=exclude)
    if isinstance(decision, Plan):
        s.blocked_note.pop(model, None)
        loading.start_placement(s, model, decision)
        return
    # (4) room once busy models finish: keep waiting (the request's load timeout bounds it)
    if decision.wait:
        if s.blocked_note.get(model) != decision.message:
            s.blocked_note[model] = decision.message
            log_event(s, "info", decision.message, model=model)
        return
    # (5) no room even after evicting every idle model: refuse now
    s.blocked_note.pop(model, None)
    error = CortexError(503, decision.message, code=f"model_unavailable_{decision.reason}")
    fail_waiters(s, model, error)
