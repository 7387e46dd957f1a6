"""Putting a model on a neuron: evict first if planned, load, and what a load's end means.

A placement starts as ``loading`` with effect ``evicting`` (victims first) or
``loading`` (the load request is out). ``on_load_done`` handles the end of a load:

1. success: take the neuron's figures, learn the model's memory, grant the waiters;
2. stale (the record changed meanwhile): just move the queue on;
3. out of memory on the first try with idle victims on that device: evict them, retry once;
4. any other failure: drop the placement, fail its waiters and fleet actions with 503.
"""

from __future__ import annotations

from cortex.common.errors import CortexError
from cortex.common.fleet import ActionResult
from cortex.common.neuron import LoadProgress, LoadRequest
from cortex.services.gateway.estimate import human
from cortex.services.gateway.policy import Plan
from cortex.services.gateway.scheduler import eviction, leasing, planning
from cortex.services.gateway.scheduler.effects import evict_then_report, load_and_report
from cortex.services.gateway.scheduler.fleet import Fleet
from cortex.services.gateway.scheduler.messages import EvictionsDone, LoadDone
from cortex.services.gateway.scheduler.publishing import log_event
from cortex.services.gateway.state import PlacementRecord


def is_memory_error(error: CortexError) -> bool:
    text = f"{error.code or ''} {error.message}".lower()
    return error.status == 507 or "memory" in text or "oom" in text.split()


def start_placement(
    s: Fleet, model: str, plan: Plan, *, wanted: bool = False, reason: str | None = None
) -> PlacementRecord:
    record = s.new_record(
        model,
        plan.neuron,
        "loading",
        device=plan.device,
        devices=[plan.device],
        estimate=plan.need,
        progress=LoadProgress(stage="queued"),
        wanted=wanted,
    )
    reason = reason or s.config.eviction.strategy
    if plan.evict:
        record.effect = "evicting"
        for resident in plan.evict:
            victim = s.placements[(resident.model, resident.neuron)]
            eviction.begin_unload(s, victim, reason, f"to make room for {model}")
        s.spawn(evict_then_report(s, record, list(plan.evict)))
    else:
        begin_load(s, record)
    return record


def on_evictions_done(s: Fleet, message: EvictionsDone) -> None:
    record = s.placements.get((message.model, message.neuron))
    if record is None or record.generation != message.generation:
        leasing.advance(s, message.model)
        return
    if not s.waiting.get(record.model) and not record.wanted:
        log_event(
            s,
            "info",
            f"load of {record.model} on {record.neuron} abandoned: every client waiting "
            "for it left",
            model=record.model,
            neuron=record.neuron,
        )
        s.drop(record)
        leasing.advance_all(s)
        return
    begin_load(s, record)


def begin_load(s: Fleet, record: PlacementRecord) -> None:
    record.effect = "loading"
    record.touch()
    s.dirty.add(record.key)
    profile = s.settings.profiles.get(record.model)
    view = s.neurons[record.neuron]
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
    log_event(
        s,
        "load",
        f"loading {record.model} on {record.neuron} (estimated {human(record.estimate)})",
        model=record.model,
        neuron=record.neuron,
    )
    s.spawn(load_and_report(s, record.model, record.neuron, record.generation, request))


def on_load_done(s: Fleet, message: LoadDone) -> None:
    record = s.placements.get((message.model, message.neuron))
    current = record is not None and record.generation == message.generation
    s.metrics.loads.labels(
        message.model, message.neuron, "ok" if message.error is None else "error"
    ).inc()
    # (1) success
    if message.error is None:
        s.metrics.load_seconds.labels(message.model).observe(message.seconds)
        loaded = message.loaded
        assert loaded is not None
        if not current:
            record = s.placements.get((message.model, message.neuron))
            if record is None:
                record = s.new_record(message.model, message.neuron, loaded.state)
        assert record is not None
        record.effect = None
        record.apply(loaded)
        if record.state == "loading":
            record.effect = None  # the neuron's events will say when it is loaded
        learn(s, record)
        log_event(
            s,
            "load",
            f"loaded {record.model} on {record.neuron} in {message.seconds:.1f}s "
            f"({human(record.memory_bytes)})",
            model=record.model,
            neuron=record.neuron,
        )
        settle_load_actions(s, record)
        leasing.advance(s, record.model)
        return
    error = message.error
    assert error is not None
    # (2) stale
    if not current:
        leasing.advance(s, message.model)
        return
    assert record is not None
    # (3) out of memory: evict idle neighbours and retry once
    if is_memory_error(error) and not record.retried:
        record.retried = True
        victims = idle_on(s, record.neuron, record.device, exclude=record.model)
        if victims:
            log_event(
                s,
                "info",
                f"loading {record.model} on {record.neuron} ran out of memory; evicting "
                f"{', '.join(v.model for v in victims)} and retrying once",
                level="warning",
                model=record.model,
                neuron=record.neuron,
            )
            record.effect = "evicting"
            for victim in victims:
                eviction.begin_unload(s, victim, "load_retry", f"retrying {record.model}")
            residents = [
                planning.resident(s, v, record.device or "", v.memory_on(record.device or ""))
                for v in victims
            ]
            s.spawn(evict_then_report(s, record, residents))
            return
    # (4) failure
    log_event(
        s,
        "error",
        f"loading {record.model} on {record.neuron} failed: {error.message}",
        level="error",
        model=record.model,
        neuron=record.neuron,
    )
    s.drop(record)
    failure = CortexError(
        503,
        f"Loading model '{record.model}' on neuron '{record.neuron}' failed: {error.message}",
        code="model_load_failed",
    )
    for future in record.action_waiters:
        if not future.done():
            future.set_exception(failure)
    record.action_waiters.clear()
    leasing.fail_waiters(s, record.model, failure)
    leasing.advance_all(s)


def idle_on(s: Fleet, neuron: str, device: str | None, *, exclude: str) -> list[PlacementRecord]:
    """Placements on ``neuron`` (and ``device``) the policy would let go: idle, unpinned."""
    victims = []
    for record in s.placements.values():
        if record.neuron != neuron or record.model == exclude:
            continue
        if device and record.memory_on(device) <= 0:
            continue
        if planning.resident(s, record, device or "", record.memory_on(device or "")).evictable:
            victims.append(record)
    return victims


def learn(s: Fleet, record: PlacementRecord) -> None:
    """Remember what the model took, for the next estimate on this kind of device."""
    if record.state != "loaded" or record.memory_bytes <= 0:
        return
    kind = s.device_kind(s.neurons[record.neuron])
    s.store.learn(record.model, kind, record.memory_bytes)
    s.catalogue_dirty = True


def settle_load_actions(s: Fleet, record: PlacementRecord) -> None:
    """Answer the fleet load actions waiting on ``record`` once it is loaded."""
    if record.state != "loaded":
        return
    result = ActionResult(
        ok=True,
        action="load",
        model=record.model,
        message=f"{record.model} is loaded on {record.neuron}",
        placements=[s.placement_wire(record)],
    )
    for future in record.action_waiters:
        if not future.done():
            future.set_result(result)
    record.action_waiters.clear()
