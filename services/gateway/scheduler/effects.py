"""The slow work the scheduler starts: loads and unloads on neurons.

Each runner is an ``async`` task started with ``Fleet.spawn``; it never touches the
state, and always ends by posting a message that a handler then judges against the
state as it is by then (the record's generation says whether it still applies). This is
the only scheduler module with ``async def`` besides the loop in core.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Protocol

from cortex.common.errors import CortexError
from cortex.common.fleet import ActionResult
from cortex.common.neuron import LoadedModel, LoadRequest
from cortex.services.gateway.policy import Resident
from cortex.services.gateway.scheduler.messages import Evicted, EvictionsDone, LoadDone
from cortex.services.gateway.state import PlacementRecord

if TYPE_CHECKING:
    from cortex.services.gateway.scheduler.fleet import Fleet

log = logging.getLogger("cortex.gateway.scheduler")


class Effects(Protocol):
    """What the scheduler asks of neurons. Raises CortexError when a neuron refuses or fails."""

    async def load(self, neuron: str, request: LoadRequest) -> LoadedModel: ...

    async def unload(self, neuron: str, model: str) -> None: ...

    def abort(self, neuron: str, reason: str) -> None:
        """End every request being proxied to ``neuron`` now (it was marked down)."""


async def load_and_report(
    s: Fleet, model: str, neuron: str, generation: int, request: LoadRequest
) -> None:
    started = time.monotonic()
    try:
        loaded = await s.effects.load(neuron, request)
    except CortexError as exc:
        s.post(LoadDone(model, neuron, generation, time.monotonic() - started, error=exc))
    except Exception as exc:  # an effect must always report back
        log.exception("load of %s on %s failed unexpectedly", model, neuron)
        error = CortexError(502, f"loading {model} on {neuron} failed: {exc}")
        seconds = time.monotonic() - started
        s.post(LoadDone(model, neuron, generation, seconds, error=error))
    else:
        s.post(LoadDone(model, neuron, generation, time.monotonic() - started, loaded=loaded))


async def unload_and_report(s: Fleet, record: PlacementRecord) -> None:
    try:
        await s.effects.unload(record.neuron, record.model)
    except CortexError as exc:
        s.post(Evicted(record.model, record.neuron, record.generation, exc))
    else:
        s.post(Evicted(record.model, record.neuron, record.generation, None))


async def evict_then_report(s: Fleet, record: PlacementRecord, evict: list[Resident]) -> None:
    """Unload each of ``evict`` (each reports ``Evicted``), then report ``EvictionsDone``."""

    async def one(resident: Resident) -> str | None:
        victim_generation = s.placements[(resident.model, resident.neuron)].generation
        try:
            await s.effects.unload(resident.neuron, resident.model)
        except CortexError as exc:
            s.post(Evicted(resident.model, resident.neuron, victim_generation, exc))
            return f"{resident.model}: {exc.message}"
        s.post(Evicted(resident.model, resident.neuron, victim_generation, None))
        return None

    results = await asyncio.gather(*(one(r) for r in evict))
    failures = [r for r in results if r]
    s.post(EvictionsDone(record.model, record.neuron, record.generation, failures))


async def answer_unload(model: str, futures: list[asyncio.Future], done: asyncio.Future) -> None:
    """Answer a fleet unload once every placement it named has reported."""
    results = await asyncio.gather(*futures, return_exceptions=True)
    texts = [r.message if isinstance(r, ActionResult | CortexError) else str(r) for r in results]
    ok = all(isinstance(r, ActionResult) and r.ok for r in results)
    if not done.done():
        done.set_result(ActionResult(ok=ok, action="unload", model=model, message="; ".join(texts)))
