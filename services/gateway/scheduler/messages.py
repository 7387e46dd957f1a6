"""What the scheduler's inbox carries: one dataclass per kind of message.

Requests, neuron watchers, timers and the fleet API post the first kinds through
:class:`~cortex.services.gateway.scheduler.core.Scheduler`'s methods; effect tasks post
the ``*Done`` / ``Evicted`` reports. ``core.Scheduler.handle`` routes each to its handler.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from cortex.common.errors import CortexError
from cortex.common.neuron import LoadedModel, NeuronEvent, NodeStatus
from cortex.services.gateway.state import Lease, Waiter


@dataclass
class Acquire:
    waiter: Waiter


@dataclass
class Release:
    lease: Lease


@dataclass
class Abandon:
    waiter: Waiter


@dataclass
class Status:
    neuron: str
    status: NodeStatus
    sent_at: float  # monotonic time the request (or subscription) went out


@dataclass
class Event:
    neuron: str
    event: NeuronEvent


@dataclass
class Unhealthy:
    neuron: str
    error: str
    definitive: bool  # connection refused by a request: no need to wait for more beats


@dataclass
class EvictionsDone:
    model: str
    neuron: str
    generation: int
    failures: list[str]


@dataclass
class Evicted:
    model: str
    neuron: str
    generation: int
    error: CortexError | None


@dataclass
class LoadDone:
    model: str
    neuron: str
    generation: int
    seconds: float
    loaded: LoadedModel | None = None
    error: CortexError | None = None


@dataclass
class FleetLoad:
    model: str
    neuron: str | None
    device: str | None
    started: asyncio.Future
    done: asyncio.Future


@dataclass
class FleetUnload:
    model: str
    neuron: str | None
    force: bool
    done: asyncio.Future


@dataclass
class Pin:
    model: str
    pinned: bool
    done: asyncio.Future


@dataclass
class SetReplicas:
    model: str
    min: int
    max: int
    done: asyncio.Future


@dataclass
class Sweep:
    pass


@dataclass
class ReplicaTick:
    pass


@dataclass
class Flush:
    pass
