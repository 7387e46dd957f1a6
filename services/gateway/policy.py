"""Eviction and placement decisions as pure functions: plain values in, a decision out.

The scheduler turns its state into these values, asks, and acts on the answer; nothing
here does I/O or reads a clock, so every rule is unit-tested without HTTP.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from cortex.services.gateway.estimate import human

Strategy = Literal["lru", "priority"]


@dataclass(frozen=True)
class Resident:
    """A model that holds (or has reserved) memory on one device of one neuron."""

    model: str
    neuron: str
    device: str
    memory: int
    state: str = "loaded"  # loaded | loading | unloading | failed
    pinned: bool = False
    busy: bool = False  # requests in flight or waiting for it
    last_used: float = 0.0  # end of its last request (or when it loaded)
    priority: int = 0

    @property
    def evictable(self) -> bool:
        return self.state == "loaded" and not self.pinned and not self.busy


def eviction_order(residents: Iterable[Resident], strategy: Strategy) -> list[Resident]:
    """The idle, unpinned, loaded residents, first to go first.

    ``lru``: least recently used first. ``priority``: lowest priority first, LRU among
    equals.
    """
    idle = [r for r in residents if r.evictable]
    if strategy == "priority":
        return sorted(idle, key=lambda r: (r.priority, r.last_used, r.model))
    return sorted(idle, key=lambda r: (r.last_used, r.model))


def choose_evictions(
    need: int, free: int, residents: Sequence[Resident], strategy: Strategy
) -> list[Resident] | None:
    """The residents to evict so that ``need`` bytes fit in ``free`` + what they release.

    ``[]`` when it fits already; ``None`` when evicting every evictable one is not enough.
    Stops at the first prefix of :func:`eviction_order` that frees enough, so the
    most recently used (or highest priority) models stay.
    """
    if need <= free:
        return []
    chosen: list[Resident] = []
    for resident in eviction_order(residents, strategy):
        chosen.append(resident)
        free += resident.memory
        if need <= free:
            return chosen
    return None


@dataclass(frozen=True)
class DeviceRoom:
    """One device of a neuron as placement sees it."""

    device: str
    capacity: int  # the budget cortex may use there
    residents: tuple[Resident, ...] = ()
    physical_free: int | None = None  # a GPU's free memory right now, if it bounds us

    @property
    def committed(self) -> int:
        return sum(r.memory for r in self.residents)

    @property
    def free(self) -> int:
        free = self.capacity - self.committed
        if self.physical_free is not None:
            free = min(free, self.physical_free)
        return free


@dataclass(frozen=True)
class NeuronRoom:
    name: str
    up: bool
    has_model: bool  # the model is in its models directory
    allowed: bool = True  # the profile's `neurons` affinity lets it host the model
    devices: tuple[DeviceRoom, ...] = ()


@dataclass(frozen=True)
class Plan:
    neuron: str
    device: str
    need: int
    evict: tuple[Resident, ...] = ()
    free_after: int = 0  # bytes left on the device once the model is in


UnplaceableReason = Literal["no_neuron", "not_allowed", "all_down", "busy", "memory"]


@dataclass(frozen=True)
class Unplaceable:
    reason: UnplaceableReason
    message: str
    # True when it would fit once busy models finish their requests: worth waiting for.
    wait: bool = False
    blockers: tuple[str, ...] = field(default=())


def plan_placement(
    model: str,
    need: int | dict[str, int],
    neurons: Sequence[NeuronRoom],
    strategy: Strategy,
    *,
    devices: Sequence[str] = (),
) -> Plan | Unplaceable:
    """Where to load ``model`` and what to evict first.

    ``need`` is bytes, or bytes per neuron name (estimates differ by device kind).
    ``devices`` restricts the devices (the profile's, or an explicit load action's).
    Preference: a device where it fits without evicting (the one with most room left,
    to spread load), else the one that evicts the fewest bytes.
    """
    holders = [n for n in neurons if n.has_model]
    if not holders:
        known = ", ".join(sorted(n.name for n in neurons)) or "none configured"
        return Unplaceable(
            "no_neuron",
            f"No neuron has model '{model}' in its models directory (neurons: {known}). "
            "Copy the model into a neuron's models_dir, or fix the id or alias.",
        )
    allowed = [n for n in holders if n.allowed]
    if not allowed:
        return Unplaceable(
            "not_allowed",
            f"Model '{model}' is only on neurons its models.toml profile does not allow "
            f"({', '.join(sorted(n.name for n in holders))}); fix the profile's `neurons`.",
        )
    up = [n for n in allowed if n.up]
    if not up:
        return Unplaceable(
            "all_down",
            f"Every neuron that has model '{model}' is down "
            f"({', '.join(sorted(n.name for n in allowed))}); start one or check its logs.",
        )

    def need_on(neuron: NeuronRoom) -> int:
        return need[neuron.name] if isinstance(need, dict) else need

    fitting: list[Plan] = []
    evicting: list[Plan] = []
    best_reachable: tuple[int, int, str, str] | None = None  # (room, need, neuron, device)
    busy_would_fit: list[str] = []
    for neuron in up:
        want = need_on(neuron)
        for room in neuron.devices:
            if devices and room.device not in devices:
                continue
            free = room.free
            chosen = choose_evictions(want, free, room.residents, strategy)
            if chosen == []:
                fitting.append(Plan(neuron.name, room.device, want, (), free - want))
                continue
            if chosen is not None:
                released = sum(r.memory for r in chosen)
                evicting.append(
                    Plan(neuron.name, room.device, want, tuple(chosen), free + released - want)
                )
                continue
            reachable = free + sum(r.memory for r in room.residents if r.evictable)
            if best_reachable is None or reachable > best_reachable[0]:
                best_reachable = (reachable, want, neuron.name, room.device)
            # Models serving requests, loading or unloading free their memory later.
            unpinned = free + sum(r.memory for r in room.residents if not r.pinned)
            if unpinned >= want:
                busy_would_fit.extend(
                    r.model for r in room.residents if not r.pinned and not r.evictable
                )
    if fitting:
        return max(fitting, key=lambda p: (p.free_after, p.neuron, p.device))
    if evicting:
        return min(
            evicting,
            key=lambda p: (sum(r.memory for r in p.evict), len(p.evict), p.neuron, p.device),
        )
    if busy_would_fit:
        names = ", ".join(sorted(set(busy_would_fit)))
        return Unplaceable(
            "busy",
            f"Model '{model}' fits only after models that are busy (serving requests, "
            f"loading or unloading) free their memory ({names}); waiting for them.",
            wait=True,
            blockers=tuple(sorted(set(busy_would_fit))),
        )
    if best_reachable is None:
        return Unplaceable(
            "memory",
            f"No device allowed for model '{model}' on the neurons that have it "
            f"(devices asked for: {', '.join(devices) or 'any'}).",
        )
    reachable, want, neuron_name, device = best_reachable
    pinned = sorted(
        {
            r.model
            for n in up
            for room in n.devices
            if n.name == neuron_name and room.device == device
            for r in room.residents
            if r.pinned
        }
    )
    pinned_note = f"; pinned there: {', '.join(pinned)}" if pinned else ""
    return Unplaceable(
        "memory",
        f"Not enough memory for model '{model}': it needs about {human(want)}, and at most "
        f"{human(max(reachable, 0))} can be freed on {neuron_name} ({device}) even after "
        f"evicting every idle unpinned model{pinned_note}. Raise that neuron's "
        "memory_budget, unpin or unload a model, or lower the model's max_seq_len "
        "(or set memory_estimate) in models.toml.",
    )
