"""The scheduler's records: what it knows about each neuron, placement and waiting request.

Only the scheduler task mutates these. Everything else reads them through the
scheduler's snapshot methods or receives copies in messages.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

from cortex.common.errors import CortexError
from cortex.common.fleet import FleetNeuron, Placement
from cortex.common.neuron import Device, LoadedModel, LoadProgress, ModelFile, PrefixCacheStatus
from cortex.services.gateway.affinity import Prefix


@dataclass
class NeuronView:
    name: str
    endpoint: str
    up: bool = False
    devices: list[Device] = field(default_factory=list)
    backends: list[str] = field(default_factory=list)
    available: dict[str, ModelFile] = field(default_factory=dict)
    version: str | None = None
    last_seen: float | None = None
    error: str | None = "not contacted yet"
    missed: int = 0

    def has_file(self, path: str) -> ModelFile | None:
        """The model file a profile path (or a plain id) names on this neuron."""
        found = self.available.get(path)
        if found is not None:
            return found
        for file in self.available.values():
            if file.path == path:
                return file
        return None

    def device(self, device_id: str) -> Device | None:
        return next((d for d in self.devices if d.id == device_id), None)

    def to_wire(self) -> FleetNeuron:
        return FleetNeuron(
            name=self.name,
            endpoint=self.endpoint,
            up=self.up,
            devices=list(self.devices),
            backends=list(self.backends),
            version=self.version,
            last_seen=self.last_seen,
            error=None if self.up else self.error,
        )


@dataclass(eq=False)
class PlacementRecord:
    """A model on one neuron: loading, loaded, unloading or failed.

    ``effect`` names the gateway action in flight for it (``evicting`` others before
    its load, ``loading``, ``unloading``); ``None`` when the neuron alone drives it.
    ``generation`` tells a finished effect whether it still belongs to this record.
    """

    model: str
    neuron: str
    state: str
    generation: int
    device: str | None = None
    devices: list[str] = field(default_factory=list)
    backend: str | None = None
    estimate: int = 0
    memory_bytes: int = 0
    memory_by_device: dict[str, int] = field(default_factory=dict)
    max_seq_len: int = 0
    in_flight: int = 0  # requests the gateway is proxying to it now
    neuron_queued: int = 0
    tokens_per_s: float = 0.0
    ttft_ms: float | None = None
    requests_total: int = 0
    completion_tokens_total: int = 0
    max_concurrency: int = 1
    forwards_total: int = 0
    prefix_cache: PrefixCacheStatus | None = None
    loaded_at: float | None = None
    last_used: float = field(default_factory=time.time)
    progress: LoadProgress | None = None
    error: str | None = None
    effect: str | None = None
    retried: bool = False
    wanted: bool = False  # a fleet load action asked for it: load even if no request waits
    scaled: bool = False  # replica scaling started it, so scaling may take it away
    action_waiters: list[asyncio.Future] = field(default_factory=list)
    changed_at: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> tuple[str, str]:
        return (self.model, self.neuron)

    def touch(self) -> None:
        self.changed_at = time.monotonic()

    def memory_on(self, device: str) -> int:
        """Bytes it holds (or has reserved, while loading) on ``device``."""
        if device in self.memory_by_device:
            held = self.memory_by_device[device]
        elif self.devices and device != self.devices[0]:
            return 0
        else:
            held = self.memory_bytes
        if self.state == "loading":
            return max(held, self.estimate)
        return held or self.estimate

    def apply(self, loaded: LoadedModel) -> None:
        """Take the neuron's figures (it is the source of truth for them)."""
        if self.effect != "unloading":
            self.state = loaded.state
        self.devices = list(loaded.devices)
        if loaded.devices and self.device is None:
            self.device = loaded.devices[0]
        self.backend = loaded.backend
        self.memory_bytes = loaded.memory_bytes
        self.memory_by_device = dict(loaded.memory_by_device)
        self.max_seq_len = loaded.max_seq_len
        self.neuron_queued = loaded.queued
        self.tokens_per_s = loaded.tokens_per_s
        self.ttft_ms = loaded.ttft_ms
        self.requests_total = loaded.requests_total
        self.completion_tokens_total = loaded.completion_tokens_total
        self.max_concurrency = loaded.max_concurrency
        self.forwards_total = loaded.forwards_total
        self.prefix_cache = loaded.prefix_cache
        self.loaded_at = loaded.loaded_at
        self.progress = loaded.progress
        self.error = loaded.error
        self.touch()

    def to_wire(self, pinned: bool, queued: int, prefixes: int = 0) -> Placement:
        return Placement(
            model=self.model,
            neuron=self.neuron,
            state=self.state,  # type: ignore[arg-type]
            devices=list(self.devices or ([self.device] if self.device else [])),
            backend=self.backend,
            pinned=pinned,
            memory_bytes=self.memory_bytes or (self.estimate if self.state == "loading" else 0),
            max_seq_len=self.max_seq_len,
            in_flight=self.in_flight,
            queued=queued + self.neuron_queued,
            tokens_per_s=self.tokens_per_s,
            ttft_ms=self.ttft_ms,
            requests_total=self.requests_total,
            completion_tokens_total=self.completion_tokens_total,
            loaded_at=self.loaded_at,
            last_used_at=self.last_used,
            progress=self.progress,
            error=self.error,
            max_concurrency=self.max_concurrency,
            forwards_total=self.forwards_total,
            prefix_cache=self.prefix_cache,
            affinity_prefixes=prefixes,
        )


@dataclass(frozen=True)
class Lease:
    """Permission to send one request for ``model`` to ``neuron``; give it back when done.

    ``route`` says why this placement (affinity.py): shown in the request's log line.
    """

    model: str
    neuron: str
    generation: int
    request_id: str
    route: str = ""


def _future() -> asyncio.Future:
    return asyncio.get_running_loop().create_future()


@dataclass(eq=False)
class Waiter:
    """A request waiting for its model: first a decision, then (if queued) a lease.

    ``decision`` resolves at once with a :class:`Lease`, ``None`` (queued: wait on
    ``granted``) or a :class:`CortexError`.
    """

    model: str
    request_id: str
    exclude: frozenset[str] = frozenset()
    prefix: Prefix | None = None  # where its conversation's prefix may be cached
    decision: asyncio.Future = field(default_factory=lambda: _future())
    granted: asyncio.Future = field(default_factory=lambda: _future())
    since: float = field(default_factory=time.time)
    consumed: bool = False  # the request took its lease (and will release it)

    def grant(self, lease: Lease) -> None:
        target = self.decision if not self.decision.done() else self.granted
        if not target.done():
            target.set_result(lease)

    def fail(self, error: CortexError) -> None:
        target = self.decision if not self.decision.done() else self.granted
        if not target.done():
            target.set_exception(error)

    def queue(self) -> None:
        if not self.decision.done():
            self.decision.set_result(None)

    @property
    def lease(self) -> Lease | None:
        for future in (self.decision, self.granted):
            if future.done() and not future.cancelled() and future.exception() is None:
                result = future.result()
                if isinstance(result, Lease):
                    return result
        return None
