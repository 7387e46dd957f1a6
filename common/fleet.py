"""The gateway's fleet API: what the console and scripts read and drive.

``GET /fleet`` returns a :class:`FleetSnapshot`. ``GET /fleet/events`` is SSE: a
``snapshot`` event on connect, then :data:`FleetEvent` changes. Actions
(``POST /fleet/models/{id}/load|unload|pin|unpin|replicas``) answer :class:`ActionResult`.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from cortex.common.neuron import Device, LoadProgress, PrefixCacheStatus

PlacementState = Literal["loading", "loaded", "unloading", "failed"]
LogKind = Literal[
    "load",
    "unload",
    "evict",
    "pin",
    "unpin",
    "replicas",
    "neuron_up",
    "neuron_down",
    "error",
    "info",
]


class FleetNeuron(msgspec.Struct, omit_defaults=True):
    name: str
    endpoint: str
    up: bool
    devices: list[Device] = []
    backends: list[str] = []
    version: str | None = None
    last_seen: float | None = None  # last successful health check or event
    error: str | None = None  # why it is down


class Placement(msgspec.Struct, omit_defaults=True):
    """A model loaded (or loading) on one neuron, with live figures."""

    model: str
    neuron: str
    state: PlacementState
    devices: list[str] = []
    backend: str | None = None
    pinned: bool = False
    memory_bytes: int = 0
    max_seq_len: int = 0
    in_flight: int = 0
    queued: int = 0
    tokens_per_s: float = 0.0
    ttft_ms: float | None = None
    requests_total: int = 0
    completion_tokens_total: int = 0
    loaded_at: float | None = None
    last_used_at: float | None = None
    progress: LoadProgress | None = None
    error: str | None = None
    max_concurrency: int = 0  # sequences its engine runs at once
    forwards_total: int = 0  # the engine's model forward passes
    prefix_cache: PrefixCacheStatus | None = None  # as the neuron reports it
    affinity_prefixes: int = 0  # conversation prefixes the gateway routes here


class ReplicaStatus(msgspec.Struct):
    """A model's replicas: its range, what the scheduler wants now, what serves."""

    min: int
    max: int
    source: Literal["default", "config", "api"]
    wanted: int  # placements the scheduler aims for now (within min..max)
    actual: int  # placements loaded and serving
    queue_depth: int = 0  # requests waiting beyond what its placements run at once
    queue_wait_s: float = 0.0  # the longest neuron queue wait seen within the window
    pressure_since: float | None = None  # when the current pressure began (epoch s)


class CatalogueEntry(msgspec.Struct, omit_defaults=True):
    """A model the fleet can serve: from models.toml, a neuron's disk, or loaded."""

    id: str
    available_on: list[str] = []  # neurons that have it on disk
    loaded_on: list[str] = []
    pinned: bool = False
    pin_source: Literal["config", "api"] | None = None
    priority: int = 0
    memory_estimate: int | None = None  # bytes, what placement plans with
    max_seq_len: int | None = None
    profile: bool = False  # has an entry in models.toml
    replicas: ReplicaStatus | None = None


class FleetSnapshot(msgspec.Struct, omit_defaults=True):
    time: float
    neurons: list[FleetNeuron]
    placements: list[Placement]
    catalogue: list[CatalogueEntry]


class LogEntry(msgspec.Struct, omit_defaults=True):
    time: float
    kind: LogKind
    message: str
    level: Literal["info", "warning", "error"] = "info"
    model: str | None = None
    neuron: str | None = None
    reason: str | None = None  # evictions: "lru", "priority", "idle_ttl", ...


# --------------------------------------------------------------------------- events


class SnapshotEvent(msgspec.Struct, tag="snapshot", tag_field="type"):
    snapshot: FleetSnapshot


class NeuronUpdate(msgspec.Struct, tag="neuron", tag_field="type"):
    neuron: FleetNeuron


class PlacementUpdate(msgspec.Struct, tag="placement", tag_field="type"):
    placement: Placement


class PlacementRemoved(msgspec.Struct, tag="placement_removed", tag_field="type"):
    model: str
    neuron: str


class CatalogueUpdate(msgspec.Struct, tag="catalogue", tag_field="type"):
    catalogue: list[CatalogueEntry]


class LogEvent(msgspec.Struct, tag="log", tag_field="type"):
    entry: LogEntry


class ActiveRequest(msgspec.Struct, omit_defaults=True):
    """A request the gateway is serving now, as the ``requests`` event lists it."""

    id: str
    model: str
    endpoint: str  # the client's dialect: "chat", "completions", "messages", "responses"
    age_s: float  # since the gateway received it
    neuron: str | None = None  # None while it waits for a placement (queued, cold load)
    ttft_ms: float | None = None  # None until its first token went out
    tokens: int = 0  # output events relayed so far (about one token each)
    tokens_per_s: float = 0.0  # since its first token


class RequestsUpdate(msgspec.Struct, tag="requests", tag_field="type"):
    """Every request in flight, oldest first (at most ``limit`` of them; ``total`` counts all)."""

    requests: list[ActiveRequest]
    total: int


FleetEvent = (
    SnapshotEvent
    | NeuronUpdate
    | PlacementUpdate
    | PlacementRemoved
    | CatalogueUpdate
    | LogEvent
    | RequestsUpdate
)


# --------------------------------------------------------------------------- actions


class LoadAction(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    neuron: str | None = None  # default: the scheduler places it
    device: str | None = None


class UnloadAction(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    neuron: str | None = None  # default: every neuron that has it loaded


class ReplicasAction(msgspec.Struct, forbid_unknown_fields=True):
    min: int
    max: int

    def __post_init__(self) -> None:
        if self.min < 0:
            raise ValueError("`min` must be >= 0")
        if self.max < 1:
            raise ValueError("`max` must be >= 1")
        if self.min > self.max:
            raise ValueError(f"`min` ({self.min}) must be <= `max` ({self.max})")


class ActionResult(msgspec.Struct, omit_defaults=True):
    ok: bool
    action: Literal["load", "unload", "pin", "unpin", "replicas"]
    model: str
    message: str
    placements: list[Placement] = []
    replicas: ReplicaStatus | None = None
