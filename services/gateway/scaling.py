"""Replica scaling decisions as pure functions: plain values in, an intent out.

The scheduler (scheduler/replicas.py) shows a model's placements, its queue and its
settings; :func:`decide` answers whether it wants one more replica, one fewer, or none,
with the reason and the numbers. Where a new replica goes (and whether there is room
without evicting pinned or busy models) is placement's question (policy.py); nothing
here does I/O or reads a clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Limits:
    """A model's replica range and the gateway's scaling thresholds."""

    min: int
    max: int
    queue_depth: int  # more waiting requests than this is pressure
    queue_wait_s: float  # a longer neuron queue wait is pressure
    window_s: float  # pressure must hold this long before a scale-up
    idle_s: float  # an extra replica idle this long is scaled down


@dataclass(frozen=True)
class Replica:
    """One placement of the model."""

    neuron: str
    state: str  # loading | loaded | unloading | failed
    in_flight: int = 0
    concurrency: int = 1  # what its engine runs at once
    neuron_queued: int = 0  # what the neuron last said waits in its queue
    idle_s: float = 0.0  # since its last request ended
    busy: bool = False  # requests in flight or waiting, or an action on it
    scaled: bool = False  # scaling started it (not a cold load or a fleet API load)

    @property
    def counted(self) -> bool:
        """A replica that serves, or will once loaded."""
        return self.state in ("loading", "loaded")

    @property
    def waiting(self) -> int:
        """Requests sent to it beyond what its engine runs at once."""
        return max(self.neuron_queued, self.in_flight - self.concurrency, 0)


@dataclass(frozen=True)
class Pressure:
    depth: int  # requests waiting: the gateway's queue plus each replica's beyond its concurrency
    wait_s: float  # the longest recent neuron queue wait

    def over(self, limits: Limits) -> str | None:
        """The threshold it is above ("queue_depth", "queue_wait"), or None."""
        if self.depth > limits.queue_depth:
            return "queue_depth"
        if self.wait_s > limits.queue_wait_s:
            return "queue_wait"
        return None

    def describe(self, limits: Limits) -> str:
        return (
            f"queue depth {self.depth} (threshold {limits.queue_depth}), "
            f"queue wait {self.wait_s:.1f}s (threshold {limits.queue_wait_s:g}s)"
        )


def pressure_of(replicas: Sequence[Replica], gateway_queued: int, wait_s: float) -> Pressure:
    depth = gateway_queued + sum(r.waiting for r in replicas if r.state == "loaded")
    return Pressure(depth, wait_s)


def held_since(since: float | None, over: bool, now: float) -> float | None:
    """When the current stretch of pressure began (None: no pressure now)."""
    if not over:
        return None
    return now if since is None else since


Direction = Literal["up", "down"]


@dataclass(frozen=True)
class Intent:
    direction: Direction
    reason: str  # up: min | queue_depth | queue_wait; down: idle | over_max
    detail: str  # the numbers, for the log
    replica: str | None = None  # down: the neuron whose replica goes


def count(replicas: Sequence[Replica]) -> int:
    return sum(1 for r in replicas if r.counted)


def decide(
    replicas: Sequence[Replica],
    limits: Limits,
    pressure: Pressure,
    pressure_since: float | None,
    now: float,
) -> Intent | None:
    """One more replica, one fewer, or None (hold).

    Up: fewer than ``min``; or pressure held for ``window_s``, fewer than ``max``, and no
    replica still loading (its capacity is on the way). Down, never while one is loading:
    more than ``max`` (an idle one goes at once), or, with no pressure, more than
    ``max(min, 1)`` and one has been idle ``idle_s`` (the longest idle goes). Only a
    replica that scaling started is scaled down.
    """
    have = count(replicas)
    loading = any(r.state == "loading" for r in replicas)
    if have < limits.min:
        if loading:
            return None  # one at a time: the next after this one is in
        return Intent("up", "min", f"{have} of min {limits.min} loaded")
    reason = pressure.over(limits)
    if reason and pressure_since is not None and have < limits.max and not loading:
        held = now - pressure_since
        if held >= limits.window_s:
            return Intent(
                "up",
                reason,
                f"{pressure.describe(limits)} for {held:.1f}s (window {limits.window_s:g}s); "
                f"{have} of max {limits.max} replicas",
            )
    if loading:
        return None  # never scale down while the capacity asked for is on its way
    # Only replicas that scaling added go: a placement loaded on demand or by an
    # operator stays, as it did before replicas (idle TTL still applies to it).
    idle = [r for r in replicas if r.state == "loaded" and r.scaled and not r.busy]
    if not idle:
        return None
    longest = max(idle, key=lambda r: (r.idle_s, r.neuron))
    if have > limits.max:
        return Intent(
            "down",
            "over_max",
            f"{have} replicas, max {limits.max}; {longest.neuron} idle {longest.idle_s:.0f}s",
            longest.neuron,
        )
    if reason is None and have > max(limits.min, 1) and longest.idle_s >= limits.idle_s:
        return Intent(
            "down",
            "idle",
            f"{longest.neuron} idle {longest.idle_s:.0f}s (window {limits.idle_s:g}s); "
            f"{have} replicas, min {limits.min}",
            longest.neuron,
        )
    return None


def resolve_range(
    default: tuple[int, int],
    configured: tuple[int | None, int | None] | None,
    api: tuple[int, int] | None,
) -> tuple[int, int, str]:
    """A model's (min, max, source): the fleet API's, else models.toml's, else the default.

    A models.toml range may give one bound; the other is the default, raised or lowered
    so that min <= max.
    """
    if api is not None:
        return api[0], api[1], "api"
    if configured is None or configured == (None, None):
        return default[0], default[1], "default"
    low, high = configured
    if low is None:
        low = min(default[0], high if high is not None else default[0])
    if high is None:
        high = max(default[1], low)
    return low, high, "config"
