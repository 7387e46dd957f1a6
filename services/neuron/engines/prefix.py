"""The prefix cache: KV state of ended sequences, kept within a byte budget (LRU).

Agents resend the same long prefix every turn (system prompt, tools, the conversation
so far). When a sequence ends, its cache and the tokens it holds are kept here; a new
prompt that starts with a kept sequence's tokens gets a copy of that many positions and
prefills only the rest. Copying (not sharing) keeps the kept entry intact for the next
request and costs a memcpy, far less than the prefill it saves.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch

from cortex.services.neuron.engines.kv import SequenceKV

MIN_REUSE = 16  # fewer matching tokens than this are not worth a copy


@dataclass
class _Entry:
    tokens: torch.Tensor  # the token ids whose positions ``cache`` holds
    cache: SequenceKV
    size: int


def common_prefix(a: torch.Tensor, b: torch.Tensor) -> int:
    """How many leading ids two 1-D id tensors share."""
    n = min(a.numel(), b.numel())
    differ = (a[:n] != b[:n]).nonzero()
    return n if differ.numel() == 0 else int(differ[0])


class PrefixCache:
    def __init__(self, budget: int) -> None:
        self.budget = max(0, budget)
        self.size = 0
        self.lookups = 0
        self.hits = 0
        self.cached_tokens = 0  # prompt tokens served from here, over all hits
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._next_key = 0

    def take(self, prompt: list[int]) -> tuple[SequenceKV | None, int]:
        """A fresh cache holding the longest kept prefix of ``prompt``, and its length.

        At least the prompt's last token is left to compute: its logits pick the first
        output token.
        """
        if not self.budget:
            return None, 0
        self.lookups += 1
        ids = torch.tensor(prompt, dtype=torch.long)
        best_key, best = None, 0
        for key, entry in self._entries.items():
            shared = common_prefix(entry.tokens, ids)
            if shared > best:
                best_key, best = key, shared
        best = min(best, len(prompt) - 1)
        if best_key is None or best < MIN_REUSE:
            return None, 0
        self._entries.move_to_end(best_key)
        self.hits += 1
        self.cached_tokens += best
        entry = self._entries[best_key]
        return entry.cache.fork(best, room=len(prompt) - best), best

    def keep(self, tokens: list[int], cache: SequenceKV) -> None:
        """Remember an ended sequence whose cache holds ``tokens``; evict LRU to fit."""
        if not self.budget or len(tokens) < MIN_REUSE or cache.length != len(tokens):
            return
        ids = torch.tensor(tokens, dtype=torch.long)
        for key, entry in list(self._entries.items()):
            shared = common_prefix(entry.tokens, ids)
            if shared == ids.numel():
                self._entries.move_to_end(key)  # already held, in full
                return
            if shared == entry.tokens.numel():
                self._drop(key)  # the new one holds all it holds
        cache = cache.compact()
        size = cache.nbytes
        if size > self.budget:
            return
        self._entries[self._next_key] = _Entry(ids, cache, size)
        self._next_key += 1
        self.size += size
        while self.size > self.budget:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: int) -> None:
        self.size -= self._entries.pop(key).size

    def clear(self) -> None:
        self._entries.clear()
        self.size = 0

    def figures(self) -> dict[str, int]:
        return {
            "prefix_cache_bytes": self.size,
            "prefix_cache_entries": len(self._entries),
            "prefix_cache_lookups": self.lookups,
            "prefix_cache_hits": self.hits,
            "prefix_cache_tokens": self.cached_tokens,
        }
