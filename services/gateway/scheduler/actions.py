"""The fleet API's actions: load, unload, pin and unpin; and preloading pinned models.

Each handler answers its futures: a fleet load's ``started`` (the neuron chosen, or the
refusal) at once and ``done`` when the model is loaded; an unload's and a pin's ``done``.
"""

from __future__ import annotations

import asyncio

from cortex.common.errors import CortexError
from cortex.common.fleet import ActionResult
from cortex.services.gateway.policy import Plan, Unplaceable
from cortex.services.gateway.scheduler import eviction, loading, planning
from cortex.services.gateway.scheduler.effects import answer_unload
from cortex.services.gateway.scheduler.fleet import Fleet
from cortex.services.gateway.scheduler.messages import FleetLoad, FleetUnload, Pin
from cortex.services.gateway.scheduler.publishing import log_event, mark_model


def on_fleet_load(s: Fleet, message: FleetLoad) -> None:
    model, neuron = message.model, message.neuron

    def refuse(error: CortexError) -> None:
        message.started.set_exception(error)
        message.done.cancel()

    if not s.model_known(model):
        return refuse(s.unknown_model_error(model))
    if neuron is not None and neuron not in s.neurons:
        known = ", ".join(s.neurons)
        text = f"There is no neuron named '{neuron}' (neurons: {known})."
        return refuse(CortexError(404, text, code="neuron_not_found"))
    existing = [r for r in s.placements_of(model) if neuron is None or r.neuron == neuron]
    for record in existing:
        if record.state == "loaded" and record.effect is None:
            message.started.set_result(record.neuron)
            message.done.set_result(
                ActionResult(
                    ok=True,
                    action="load",
                    model=model,
                    message=f"{model} is already loaded on {record.neuron}",
                    placements=[s.placement_wire(record)],
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
                f"{model} is being unloaded from {record.neuron}; load it again once that finishes."
            )
            return refuse(CortexError(409, text, code="model_unloading"))
    decision = planning.plan(s, model, only=neuron, device=message.device)
    if isinstance(decision, Unplaceable):
        status = 409 if decision.wait else 503
        code = f"model_unavailable_{decision.reason}"
        return refuse(CortexError(status, decision.message, code=code))
    record = loading.start_placement(s, model, decision, wanted=True)
    record.action_waiters.append(message.done)
    message.started.set_result(record.neuron)


def on_fleet_unload(s: Fleet, message: FleetUnload) -> None:
    model = message.model
    records = [
        r for r in s.placements_of(model) if message.neuron is None or r.neuron == message.neuron
    ]
    if not records:
        where = f" on {message.neuron}" if message.neuron else ""
        message.done.set_exception(
            CortexError(409, f"{model} is not loaded{where}; nothing to unload.", code="not_loaded")
        )
        return
    for record in records:
        if record.state == "loading" or record.effect in ("loading", "evicting"):
            message.done.set_exception(
                CortexError(
                    409,
                    f"{model} is still loading on {record.neuron}; unload it once it is loaded.",
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
        future = asyncio.get_running_loop().create_future()
        record.action_waiters.append(future)
        futures.append(future)
        if record.effect != "unloading":  # one already under way answers this one too
            eviction.unload(s, record, "action", "asked through the fleet API")
    s.spawn(answer_unload(model, futures, message.done))


def on_pin(s: Fleet, message: Pin) -> None:
    model, pinned = message.model, message.pinned
    action = "pin" if pinned else "unpin"
    if not s.model_known(model):
        message.done.set_exception(s.unknown_model_error(model))
        return
    if not pinned and s.pin_source(model) == "config":
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
        changed = s.store.set_pin(model, pinned)
    except OSError as exc:
        message.done.set_exception(
            CortexError(
                500,
                f"Could not save the pin to {s.store.path}: {exc}; check that the "
                "gateway can write there (gateway.state_file).",
                code="state_not_saved",
            )
        )
        return
    if changed:
        log_event(s, action, f"{action}ned {model}", model=model)  # type: ignore[arg-type]
        mark_model(s, model)
        s.catalogue_dirty = True
    message.done.set_result(
        ActionResult(
            ok=True,
            action=action,  # type: ignore[arg-type]
            model=model,
            message=f"{model} is {'pinned' if pinned else 'not pinned'}"
            + ("" if changed else " (no change)"),
            placements=[s.placement_wire(r) for r in s.placements_of(model)],
        )
    )


def preload_pins(s: Fleet) -> None:
    """Start the load of each model pinned in models.toml once a neuron can take it.

    A pin that can never fit (memory, not allowed anywhere) is logged and not retried.
    """
    for profile in s.settings.profiles.values():
        if not profile.pin or profile.id in s.preloaded:
            continue
        if s.placements_of(profile.id):
            s.preloaded.add(profile.id)
            continue
        decision = planning.plan(s, profile.id)
        if isinstance(decision, Plan):
            s.preloaded.add(profile.id)
            loading.start_placement(s, profile.id, decision, wanted=True, reason="pin_preload")
        elif decision.reason in ("memory", "not_allowed"):
            s.preloaded.add(profile.id)
            log_event(
                s,
                "error",
                f"cannot preload pinned {profile.id}: {decision.message}",
                level="warning",
                model=profile.id,
            )
