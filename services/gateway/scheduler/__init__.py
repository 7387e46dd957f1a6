"""The scheduler: one asyncio task that owns which model is loading, loaded or unloading where.

Requests, neuron watchers, timers and the fleet API send it messages; it handles each
one synchronously (no ``await`` inside a handler), so every decision sees the state as
it is, and no lock is needed. Anything slow (a load, an unload) runs as an effect task
that reports back with another message; a decision is never taken on a view that an
effect may have changed meanwhile (llama-swap #946): effects carry the record's
generation and the handler checks it.

Neurons are the source of truth: their status and events overwrite the figures here.

Decisions worth knowing:

* Requests for a model that is loaded go to the placement that served their
  conversation's prefix (../affinity.py), else the one with the fewest requests in
  flight per sequence its engine runs at once. Otherwise they wait for the one load
  of that model, whoever triggered it.
* A model that fits only after busy models free memory waits for them (until the
  request's load timeout); one that cannot fit even after evicting every idle unpinned
  model is refused at once with 503 naming the numbers.
* When every client waiting for a load leaves before the gateway has sent the load to
  the neuron (it may be evicting first), the load is abandoned. Once the neuron is
  loading, the load runs to the end: the cost is mostly paid, and the model then sits
  idle like any other, subject to idle TTL and eviction.

Where each part lives (DESIGN.md beside this package draws the states):

=============== ==========================================================================
core.py         the actor: inbox, loop, dispatch of each message, the public API
messages.py     what the inbox carries
fleet.py        the state (declared in one ``__init__``) and the synchronous reads of it
leasing.py      requests: grant a lease, queue, start the one load, or refuse
planning.py     what the pure policy (../policy.py) sees: rooms, residents
loading.py      a load from start to end: evictions first, success, OOM retry, failure
eviction.py     when a model is unloaded (idle TTL, over budget, for room) and how it ends
intake.py       what neurons report: status, events, missed heartbeats
actions.py      the fleet API's load, unload, pin; preloading pinned models
replicas.py     scaling a model's placements on queue pressure and idleness (../scaling.py)
publishing.py   the changes handlers mark, flushed to the fleet event stream
effects.py      the async loads and unloads, each ending in a message back
=============== ==========================================================================
"""

from cortex.services.gateway.scheduler.core import Scheduler
from cortex.services.gateway.scheduler.effects import Effects
from cortex.services.gateway.scheduler.loading import is_memory_error

__all__ = ["Effects", "Scheduler", "is_memory_error"]
