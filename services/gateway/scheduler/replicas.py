"""Replicas: scaling a model's placements up on queue pressure and down when idle.

Every ``replicas.interval_s`` the actor looks at each model it watches (``on_tick``):
scaling.py decides the intent (one more, one fewer, or none) from the placements, the
queue and the model's range; here the intent meets the fleet:

* up: placed on a neuron that does not host the model yet, by the same policy as a cold
  load, so it may evict idle unpinned models but never pinned or busy ones; when no
  neuron can take it, the decision is *not taken* and says why;
* down: the longest idle extra replica is unloaded (eviction reason ``replica_idle`` or
  ``replica_over_max``).

Each decision, taken or not, is a fleet log entry (kind ``replicas``) with its reason and
numbers and a count in ``cortex_gateway_replica_decisions_total``; a refusal is logged
once until its reason changes. Ranges set through the fleet API (``on_set``) are saved
in the state file and win over models.toml's.
"""

from __future__ import annotations

import time

from cortex.common.errors import CortexError
from cortex.common.fleet import ActionResult
from cortex.services.gateway.policy import Unplaceable, plan_placement
from cortex.services.gateway.scaling import Intent, Limits, count, decide, held_since
from cortex.services.gateway.scheduler import eviction, loading, planning
from cortex.services.gateway.scheduler.fleet import Fleet
from cortex.services.gateway.scheduler.messages import SetReplicas
from cortex.services.gateway.scheduler.publishing import log_event, mark_model


def on_tick(s: Fleet) -> None:
    for model in watched(s):
        evaluate(s, model)


def watched(s: Fleet) -> list[str]:
    """Models with placements, a queue, or a range that may ask for loads."""
    if all(v.last_seen is None for v in s.neurons.values()):
        return []  # no neuron has said what it has yet
    models: dict[str, None] = dict.fromkeys(m for m, _ in s.placements)
    models.update(dict.fromkeys(s.waiting))
    if s.config.replicas.min > 0:
        models.update(dict.fromkeys(s.model_ids()))
    models.update(dict.fromkeys(p.id for p in s.settings.profiles.values() if p.replicas))
    models.update(dict.fromkeys(s.store.state.replicas))
    return [m for m in models if s.model_known(m)]


def evaluate(s: Fleet, model: str) -> None:
    limits, _ = s.replica_limits(model)
    replicas = s.replica_views(model)
    pressure = s.replica_pressure(model, replicas, limits)
    now = time.monotonic()
    since = held_since(s.pressure_since.get(model), pressure.over(limits) is not None, now)
    if since is None:
        s.pressure_since.pop(model, None)
        s.calm_since.setdefault(model, now)
    else:
        s.pressure_since[model] = since
        s.calm_since.pop(model, None)
    s.metrics.replicas_serving.labels(model).set(sum(r.state == "loaded" for r in replicas))
    s.metrics.replicas_wanted.labels(model).set(s.replica_status(model).wanted)
    intent = decide(replicas, limits, pressure, since, now)
    if intent is None:
        calm = now - s.calm_since.get(model, now) >= limits.window_s
        if calm and count(replicas) >= limits.min and model in s.replica_notes:
            del s.replica_notes[model]  # the refused wish went with a window of no pressure
            s.catalogue_dirty = True
        return
    if intent.direction == "up":
        scale_up(s, model, intent, limits)
    else:
        scale_down(s, model, intent)


def scale_up(s: Fleet, model: str, intent: Intent, limits: Limits) -> None:
    now = time.monotonic()
    if (
        intent.reason == "min"
        and now - s.last_scale_up.get(model, -limits.window_s) < limits.window_s
    ):
        return  # a load for min just failed: try again a window later, not every tick
    if intent.reason != "min":
        s.pressure_since[model] = now  # the next decision needs a new window
    have = count(s.replica_views(model))
    hosting = {r.neuron for r in s.placements_of(model)}
    found, needs = planning.rooms(s, model)
    others = [n for n in found if n.name not in hosting]
    if not any(n.has_model for n in others):
        where = f" besides {', '.join(sorted(hosting))}" if hosting else ""
        return not_taken(s, model, intent, f"no other neuron has {model} on disk{where}")
    profile = s.settings.profiles.get(model)
    devices = list(profile.devices) if profile else []
    plan = plan_placement(model, needs, others, s.config.eviction.strategy, devices=devices)
    if isinstance(plan, Unplaceable):
        return not_taken(
            s, model, intent, f"no room without evicting pinned or busy models: {plan.message}"
        )
    s.replica_notes.pop(model, None)
    evicting = f", evicting {', '.join(r.model for r in plan.evict)}" if plan.evict else ""
    record_decision(
        s,
        model,
        intent,
        f"scaling {model} up to {have + 1} (max {limits.max}): loading on {plan.neuron}"
        f"{evicting} ({intent.reason}: {intent.detail})",
        neuron=plan.neuron,
    )
    s.last_scale_up[model] = now
    loading.start_placement(s, model, plan, wanted=True).scaled = True
    s.catalogue_dirty = True


def not_taken(s: Fleet, model: str, intent: Intent, why: str) -> None:
    note = f"{intent.reason}: {why}"
    if s.replica_notes.get(model) == note:
        return
    s.replica_notes[model] = note
    s.catalogue_dirty = True
    record_decision(
        s,
        model,
        intent,
        f"not scaling {model} up ({intent.reason}: {intent.detail}): {why}",
        taken=False,
    )


def scale_down(s: Fleet, model: str, intent: Intent) -> None:
    record = s.placements[(model, intent.replica or "")]
    have = count(s.replica_views(model))
    record_decision(
        s,
        model,
        intent,
        f"scaling {model} down to {have - 1}: unloading from {record.neuron} "
        f"({intent.reason}: {intent.detail})",
        neuron=record.neuron,
    )
    eviction.unload(s, record, f"replica_{intent.reason}", intent.detail)
    s.catalogue_dirty = True


def record_decision(
    s: Fleet,
    model: str,
    intent: Intent,
    message: str,
    *,
    taken: bool = True,
    neuron: str | None = None,
) -> None:
    """A decision (or one not taken) in the fleet log and the decisions counter."""
    log_event(
        s,
        "replicas",
        message,
        level="info" if taken else "warning",
        model=model,
        neuron=neuron,
        reason=intent.reason,
    )
    outcome = "taken" if taken else "not_taken"
    s.metrics.replica_decisions.labels(model, intent.direction, outcome, intent.reason).inc()


def on_set(s: Fleet, message: SetReplicas) -> None:
    """The fleet API sets a model's range: saved, logged, and acted on at once."""
    model = message.model
    if not s.model_known(model):
        message.done.set_exception(s.unknown_model_error(model))
        return
    before, _ = s.replica_limits(model)
    try:
        changed = s.store.set_replicas(model, message.min, message.max)
    except OSError as exc:
        message.done.set_exception(
            CortexError(
                500,
                f"Could not save the replicas to {s.store.path}: {exc}; check that the "
                "gateway can write there (gateway.state_file).",
                code="state_not_saved",
            )
        )
        return
    if changed:
        log_event(
            s,
            "replicas",
            f"replicas of {model} set to min {message.min}, max {message.max} "
            f"(was {before.min}..{before.max})",
            model=model,
            reason="api",
        )
        s.replica_notes.pop(model, None)
        s.catalogue_dirty = True
        mark_model(s, model)
        evaluate(s, model)
    message.done.set_result(
        ActionResult(
            ok=True,
            action="replicas",
            model=model,
            message=f"{model} keeps {message.min} to {message.max} replicas"
            + ("" if changed else " (no change)"),
            placements=[s.placement_wire(r) for r in s.placements_of(model)],
            replicas=s.replica_status(model),
        )
    )
