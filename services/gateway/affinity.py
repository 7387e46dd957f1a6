"""Conversation affinity: send a request to the placement most likely to hold its prefix.

An engine's prefix cache only helps if a conversation's next turn reaches the same
engine. A request's prefix is a hash chain over its messages (``hashes[i]`` stands for
the first ``i`` messages, ``hashes[0]`` for the tools, or for the client's
``prompt_cache_key``). Each placement remembers the chains it served in a bounded LRU
table; the next request goes where its deepest hash is remembered, unless that placement
is saturated (as many requests in flight as its engine runs at once) or down: then
least in flight, as without affinity.

What counts as a match: without a hint, at least the first message after the system
prompt (sharing only a system prompt says little, and new conversations should spread);
an Anthropic ``cache_control`` breakpoint on the system prompt or tools says that prefix
is worth reusing, so it counts alone; a ``prompt_cache_key`` counts by itself.

Pure values and functions; the scheduler (scheduler/leasing.py) owns the table.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec

from cortex.common import anthropic as a

PREFIXES_PER_PLACEMENT = 4096  # hashes remembered per placement, least recently used go
PROMPT_CHUNK_CHARS = 2048  # a completions prompt is chained in pieces of this size


@dataclass(frozen=True)
class Prefix:
    hashes: tuple[bytes, ...]  # hashes[i]: the first i parts (0: the seed)
    counted_from: int  # matches shallower than this do not count
    hint: str  # "prompt_cache_key" | "cache_control" | "messages" | "prompt"


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=8).digest()


def chain(seed: bytes, parts: Sequence[bytes]) -> tuple[bytes, ...]:
    current = _digest(seed)
    hashes = [current]
    for part in parts:
        current = _digest(current + part)
        hashes.append(current)
    return tuple(hashes)


class _Head(msgspec.Struct):
    messages: list[msgspec.Raw] | None = None
    prompt: str | None = None
    tools: msgspec.Raw = msgspec.Raw(b"")  # (Raw | None would refuse anything but null)
    prompt_cache_key: str | None = None


class _Role(msgspec.Struct):
    role: str = ""


_head = msgspec.json.Decoder(_Head)
_role = msgspec.json.Decoder(_Role)


def from_openai(body: bytes, *, system_breakpoint: bool = False) -> Prefix | None:
    """The prefix of an OpenAI chat (or completions) body; None when it has none.

    ``system_breakpoint``: the client marked the system prompt cacheable (Anthropic).
    """
    try:
        head = _head.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None  # the neuron will say what is wrong with it
    key = head.prompt_cache_key
    seed = b"key:" + key.encode() if key else b"tools:" + bytes(head.tools)
    if head.messages:
        parts = [bytes(raw) for raw in head.messages]
        leading = 0
        for raw in head.messages:
            try:
                if _role.decode(raw).role not in ("system", "developer"):
                    break
            except (msgspec.DecodeError, msgspec.ValidationError):
                break
            leading += 1
        hint = "messages"
        counted_from = leading + 1
        if system_breakpoint and leading:
            hint, counted_from = "cache_control", leading
    elif head.prompt:
        text = head.prompt
        parts = [
            text[i : i + PROMPT_CHUNK_CHARS].encode()
            for i in range(0, len(text), PROMPT_CHUNK_CHARS)
        ]
        hint, counted_from = "prompt", 1
    else:
        return None
    if key:
        hint, counted_from = "prompt_cache_key", 0
    return Prefix(chain(seed, parts), counted_from, hint)


def caches_system(request: a.MessagesBase) -> bool:
    """Whether an Anthropic request puts a ``cache_control`` breakpoint on its system
    prompt or tools."""
    blocks = request.system if isinstance(request.system, list) else []
    return any(b.cache_control for b in blocks) or any(t.cache_control for t in request.tools or ())


class AffinityTable:
    """The prefix hashes each placement served, bounded per placement (LRU)."""

    def __init__(self, per_placement: int = PREFIXES_PER_PLACEMENT) -> None:
        self.per_placement = per_placement
        self._tables: dict[tuple[str, str], OrderedDict[bytes, None]] = {}

    def depth(self, key: tuple[str, str], prefix: Prefix) -> int:
        """How many of the prefix's parts ``key`` holds (-1: not even the seed)."""
        table = self._tables.get(key)
        if not table:
            return -1
        for index in range(len(prefix.hashes) - 1, -1, -1):
            if prefix.hashes[index] in table:
                return index
        return -1

    def remember(self, key: tuple[str, str], prefix: Prefix) -> None:
        table = self._tables.setdefault(key, OrderedDict())
        for digest in prefix.hashes:
            table[digest] = None
            table.move_to_end(digest)
        while len(table) > self.per_placement:
            table.popitem(last=False)

    def forget(self, key: tuple[str, str]) -> None:
        self._tables.pop(key, None)

    def size(self, key: tuple[str, str]) -> int:
        return len(self._tables.get(key, ()))


@dataclass(frozen=True)
class Candidate:
    """A placement of the model as the choice sees it."""

    neuron: str
    in_flight: int
    concurrency: int
    depth: int = -1  # AffinityTable.depth
    eligible: bool = True  # loaded, up and not excluded by the request

    @property
    def saturated(self) -> bool:
        return self.in_flight >= max(self.concurrency, 1)

    @property
    def load(self) -> float:
        """Requests in flight per sequence its engine runs at once: a batching engine with
        eight slots and three requests is less loaded than a one-slot engine with one."""
        return self.in_flight / max(self.concurrency, 1)


def choose(candidates: Sequence[Candidate], prefix: Prefix | None) -> tuple[str, str] | None:
    """(neuron, route) for a request; None when no candidate is eligible.

    ``route`` names the decision for the request log: ``affinity:<hint>:<depth>``, or
    ``least_in_flight`` with why the affinity choice was not taken (``saturated``,
    ``down``) or ``no_match``. "Least in flight" counts against each placement's reported
    concurrency (``Candidate.load``), first among equals.
    """
    eligible = [c for c in candidates if c.eligible]
    if not eligible:
        return None
    least = min(eligible, key=lambda c: c.load)
    if prefix is None:
        return least.neuron, "least_in_flight"
    matched = [c for c in candidates if c.depth >= prefix.counted_from]
    if not matched:
        return least.neuron, "least_in_flight:no_match"
    deepest = max(c.depth for c in matched)
    best = [c for c in matched if c.depth == deepest]
    usable = [c for c in best if c.eligible and not c.saturated]
    if usable:
        pick = min(usable, key=lambda c: c.load)
        return pick.neuron, f"affinity:{prefix.hint}:{deepest}"
    reason = "saturated" if any(c.eligible for c in best) else "down"
    return least.neuron, f"least_in_flight:{reason}"
