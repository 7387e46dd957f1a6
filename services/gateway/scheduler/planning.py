"""What the pure policy (policy.py) is shown: each neuron's room, each device's residents.

``plan`` turns the scheduler's records into policy inputs and returns the policy's
answer: a :class:`Plan` (where, and whom to evict first) or :class:`Unplaceable`.
"""

from __future__ import annotations

from cortex.common.neuron import Device
from cortex.services.gateway.policy import (
    DeviceRoom,
    NeuronRoom,
    Plan,
    Resident,
    Unplaceable,
    plan_placement,
)
from cortex.services.gateway.scheduler.fleet import Fleet
from cortex.services.gateway.state import NeuronView, PlacementRecord


def plan(
    s: Fleet,
    model: str,
    *,
    exclude: frozenset[str] = frozenset(),
    only: str | None = None,
    device: str | None = None,
) -> Plan | Unplaceable:
    found, needs = rooms(s, model, exclude=exclude, only=only)
    if not found and only is not None:
        return Unplaceable("no_neuron", f"There is no neuron named '{only}'.")
    profile = s.settings.profiles.get(model)
    devices = [device] if device else list(profile.devices) if profile else []
    return plan_placement(model, needs, found, s.config.eviction.strategy, devices=devices)


def rooms(
    s: Fleet, model: str, *, exclude: frozenset[str] = frozenset(), only: str | None = None
) -> tuple[list[NeuronRoom], dict[str, int]]:
    profile = s.settings.profiles.get(model)
    found: list[NeuronRoom] = []
    needs: dict[str, int] = {}
    for view in s.neurons.values():
        if only is not None and view.name != only:
            continue
        file = s.file(view, model)
        kind = s.device_kind(view)
        devices = []
        for device in view.devices:
            if device.kind != kind and not (profile and device.id in profile.devices):
                continue
            if profile and profile.devices and device.id not in profile.devices:
                continue
            devices.append(device_room(s, view, device))
        need = s.estimate_for(view, model)
        if need is not None:
            needs[view.name] = need
        found.append(
            NeuronRoom(
                name=view.name,
                up=view.up and view.name not in exclude,
                has_model=file is not None,
                allowed=s.allowed(view, model),
                devices=tuple(devices),
            )
        )
    return found, needs


def device_room(s: Fleet, view: NeuronView, device: Device) -> DeviceRoom:
    residents = []
    pending = 0
    for record in s.placements.values():
        if record.neuron != view.name:
            continue
        held = record.memory_on(device.id)
        if held <= 0 and record.device != device.id:
            continue
        if record.state == "loading":
            pending += max(0, record.estimate - record.memory_bytes)
        residents.append(resident(s, record, device.id, held))
    capacity = device.budget if device.budget is not None else device.memory_total
    physical = device.memory_free - pending if device.kind == "cuda" else None
    return DeviceRoom(device.id, capacity, tuple(residents), physical)


def resident(s: Fleet, record: PlacementRecord, device: str, held: int) -> Resident:
    """``record`` as the policy sees it on ``device``: busy, pinned and idle decide eviction.

    A placement the model's replica ``min`` keeps counts as pinned.
    """
    profile = s.settings.profiles.get(record.model)
    kept = s.replica_limits(record.model)[0].min >= sum(
        1 for r in s.placements_of(record.model) if r.state in ("loading", "loaded")
    )
    busy = (
        record.in_flight > 0
        or bool(s.waiting.get(record.model))
        or bool(record.action_waiters)
        or record.effect is not None
    )
    return Resident(
        model=record.model,
        neuron=record.neuron,
        device=device,
        memory=held,
        state=record.state,
        pinned=s.pinned(record.model) or kept,
        busy=busy,
        last_used=record.last_used,
        priority=profile.priority if profile else 0,
    )
