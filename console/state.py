"""The fleet as the console knows it: a plain object the event stream writes into.

The stream worker calls :meth:`FleetState.apply` for every event and the UI timer
drains :meth:`FleetState.take_changes` to update only what moved. No Textual, no I/O:
the ``--json`` path and the unit tests use it as it is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from cortex.common.fleet import (
    ActiveRequest,
    CatalogueEntry,
    CatalogueUpdate,
    FleetEvent,
    FleetNeuron,
    FleetSnapshot,
    LogEntry,
    LogEvent,
    NeuronUpdate,
    Placement,
    PlacementRemoved,
    PlacementUpdate,
    RequestsUpdate,
    SnapshotEvent,
)
from cortex.console.summary import FleetSummary, summarize

PlacementKey = tuple[str, str]  # (model, neuron)

ConnectionStatus = Literal["connecting", "connected", "reconnecting"]


def placement_key(placement: Placement) -> PlacementKey:
    return (placement.model, placement.neuron)


@dataclass(slots=True)
class Connection:
    """Where the stream stands; the header renders it."""

    status: ConnectionStatus = "connecting"
    since: float | None = None  # connected: when; otherwise when the data went stale
    retry_at: float | None = None  # reconnecting: when the next attempt starts
    error: str | None = None  # why the last attempt failed
    attempts: int = 0  # failed attempts since the last success


@dataclass(slots=True)
class Changes:
    """What moved since the UI last looked. ``reset``: everything may have."""

    reset: bool = False
    neurons: set[str] = field(default_factory=set)
    placements: set[PlacementKey] = field(default_factory=set)
    history: set[PlacementKey] = field(default_factory=set)  # only the tok/s history moved
    catalogue: bool = False
    requests: bool = False
    log: list[LogEntry] = field(default_factory=list)
    connection: bool = False

    def __bool__(self) -> bool:
        return bool(
            self.reset
            or self.neurons
            or self.placements
            or self.history
            or self.catalogue
            or self.requests
            or self.log
            or self.connection
        )

    @property
    def fleet(self) -> bool:
        """Anything the summary line depends on."""
        return bool(self.reset or self.neurons or self.placements or self.catalogue)


class FleetState:
    """Neurons, placements, catalogue, requests in flight and the event log, plus
    per-placement tok/s history."""

    def __init__(self, *, history: int = 40, log_size: int = 500, sample_every: float = 1.0):
        self.neurons: dict[str, FleetNeuron] = {}
        self.placements: dict[PlacementKey, Placement] = {}
        self.catalogue: dict[str, CatalogueEntry] = {}
        self.requests: list[ActiveRequest] = []  # oldest first, as the gateway lists them
        self.requests_total = 0  # the gateway lists at most 100; this counts them all
        self.log: deque[LogEntry] = deque(maxlen=log_size)
        self.history: dict[PlacementKey, deque[float]] = {}
        self.connection = Connection()
        self.snapshot_time: float | None = None
        self._history_size = history
        self._sample_every = sample_every
        self._last_sample: float | None = None
        self._changes = Changes(reset=True, connection=True)

    # ------------------------------------------------------------------ writing

    def apply(self, event: FleetEvent) -> None:
        """Fold one event from ``GET /fleet/events`` into the state."""
        changes = self._changes
        if isinstance(event, SnapshotEvent):
            self.apply_snapshot(event.snapshot)
        elif isinstance(event, NeuronUpdate):
            self.neurons[event.neuron.name] = event.neuron
            changes.neurons.add(event.neuron.name)
        elif isinstance(event, PlacementUpdate):
            key = placement_key(event.placement)
            self.placements[key] = event.placement
            self.history.setdefault(key, deque(maxlen=self._history_size))
            changes.placements.add(key)
        elif isinstance(event, PlacementRemoved):
            key = (event.model, event.neuron)
            self.placements.pop(key, None)
            self.history.pop(key, None)
            changes.placements.add(key)
        elif isinstance(event, CatalogueUpdate):
            self.catalogue = {entry.id: entry for entry in event.catalogue}
            changes.catalogue = True
        elif isinstance(event, RequestsUpdate):
            self.requests = event.requests
            self.requests_total = max(event.total, len(event.requests))
            changes.requests = True
        elif isinstance(event, LogEvent):
            self.add_log(event.entry)

    def apply_snapshot(self, snapshot: FleetSnapshot) -> None:
        """Replace everything; tok/s history survives for placements that still exist."""
        self.snapshot_time = snapshot.time
        self.neurons = {n.name: n for n in snapshot.neurons}
        placements = {placement_key(p): p for p in snapshot.placements}
        self.history = {
            key: self.history.get(key, deque(maxlen=self._history_size)) for key in placements
        }
        self.placements = placements
        self.catalogue = {entry.id: entry for entry in snapshot.catalogue}
        # A gateway sends the requests in flight right after its snapshot.
        self.requests, self.requests_total = [], 0
        self._changes.reset = True

    def add_log(self, entry: LogEntry) -> None:
        self.log.append(entry)
        self._changes.log.append(entry)

    def merge_log(self, entries: list[LogEntry]) -> None:
        """Add the gateway's recent entries that the log does not hold yet, oldest first.

        After a reconnect the history overlaps what the stream already delivered; an
        entry is the same when its time, kind and message are.
        """
        known = {(e.time, e.kind, e.message) for e in self.log}
        for entry in sorted(entries, key=lambda e: e.time):
            if (entry.time, entry.kind, entry.message) not in known:
                self.add_log(entry)

    def sample(self, now: float) -> None:
        """Append every placement's current tok/s to its history, at most once per period."""
        if self._last_sample is not None and now - self._last_sample < self._sample_every:
            return
        self._last_sample = now
        for key, placement in self.placements.items():
            history = self.history.setdefault(key, deque(maxlen=self._history_size))
            history.append(placement.tokens_per_s)
            self._changes.history.add(key)

    # Connection state: written by the stream worker, shown in the header.

    def connected(self, now: float) -> None:
        was = self.connection.status
        self.connection = Connection(status="connected", since=now)
        self._changes.connection = True
        if was == "reconnecting":
            self.add_log(LogEntry(time=now, kind="info", message="reconnected to the gateway"))

    def disconnected(self, now: float, error: str, retry_in: float) -> None:
        previous = self.connection
        stale_since = now if previous.status == "connected" else previous.since or now
        self.connection = Connection(
            status="reconnecting",
            since=stale_since,
            retry_at=now + retry_in,
            error=error,
            attempts=previous.attempts + 1,
        )
        self._changes.connection = True
        if previous.status == "connected" or previous.attempts == 0:
            self.add_log(
                LogEntry(
                    time=now,
                    kind="error",
                    level="error",
                    message=f"lost the gateway's event stream: {error}",
                )
            )

    # ------------------------------------------------------------------ reading

    def take_changes(self) -> Changes:
        changes, self._changes = self._changes, Changes()
        return changes

    def summary(self) -> FleetSummary:
        return summarize(self.neurons.values(), self.placements.values(), len(self.catalogue))

    def placements_of(self, neuron: str) -> list[Placement]:
        return [p for (_, n), p in self.placements.items() if n == neuron]

    def placements_for(self, model: str) -> list[Placement]:
        return [p for (m, _), p in self.placements.items() if m == model]

    def is_pinned(self, model: str) -> bool:
        entry = self.catalogue.get(model)
        if entry is not None:
            return entry.pinned
        return any(p.pinned for p in self.placements_for(model))
