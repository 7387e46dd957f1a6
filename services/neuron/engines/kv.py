"""Per-sequence KV caches and the attention that reads them, for ragged batches.

Every sequence owns one :class:`SequenceKV`: per layer, a key and a value buffer
``[kv_heads, capacity, head_dim]`` of which the first ``length`` positions hold its
tokens. A batched forward never pads: the new tokens of every sequence are packed into
one row (a decoding sequence's one token next to another's prompt chunk), the model's
linear layers run on all of them at once, and :func:`ragged_attention` (registered with
transformers as an attention implementation) appends each segment's new keys and values
to that sequence's own cache and attends over exactly its own positions. So sequences of
any lengths share a forward, a prompt chunk rides along with the decode step instead of
paying a forward of its own, sequences join or leave between any two steps, and a cache
can be forked (a prefix copied) or truncated, which is what the prefix cache keeps.
"""

from __future__ import annotations

import threading
from typing import Any

import torch
import torch.nn.functional as F

ATTENTION_NAME = "cortex_ragged"


class SequenceKV:
    """One sequence's keys and values for every layer, grown by doubling."""

    def __init__(self, layers: int, kv_heads: int, head_dim: int, dtype, device) -> None:
        self.layers = layers
        self.shape = (kv_heads, head_dim)
        self.dtype = dtype
        self.device = device
        self.keys: list[torch.Tensor | None] = [None] * layers
        self.values: list[torch.Tensor | None] = [None] * layers
        self.lengths = [0] * layers

    @property
    def length(self) -> int:
        """Positions held (the last layer's count: a forward that failed half-way is cut)."""
        return self.lengths[-1]

    @property
    def nbytes(self) -> int:
        return sum(
            t.numel() * t.element_size() for t in (*self.keys, *self.values) if t is not None
        )

    def append(self, layer: int, key: torch.Tensor, value: torch.Tensor):
        """Add ``[kv_heads, n, head_dim]`` new positions; the layer's whole keys and values."""
        start = self.lengths[layer]
        end = start + key.shape[1]
        self._reserve(layer, end)
        keys, values = self.keys[layer], self.values[layer]
        assert keys is not None and values is not None
        keys[:, start:end] = key
        values[:, start:end] = value
        self.lengths[layer] = end
        return keys[:, :end], values[:, :end]

    def reserve(self, size: int) -> None:
        """Room for ``size`` positions in every layer (a prompt's, known up front: its
        chunks then never copy the cache to grow it)."""
        for layer in range(self.layers):
            self._reserve(layer, size)

    def _reserve(self, layer: int, size: int) -> None:
        current = self.keys[layer]
        capacity = 0 if current is None else current.shape[1]
        if size <= capacity:
            return
        grown = max(size, 2 * capacity, 16)
        heads, dim = self.shape
        for buffers in (self.keys, self.values):
            fresh = torch.empty(heads, grown, dim, dtype=self.dtype, device=self.device)
            old = buffers[layer]
            if old is not None:
                fresh[:, : self.lengths[layer]] = old[:, : self.lengths[layer]]
            buffers[layer] = fresh

    def truncate(self, length: int) -> None:
        """Forget every position from ``length`` on (a failed forward, a shorter reuse)."""
        self.lengths = [min(n, length) for n in self.lengths]

    def fork(self, length: int, room: int = 0) -> SequenceKV:
        """A new cache holding a copy of the first ``length`` positions (and room to grow)."""
        copy = SequenceKV(self.layers, *self.shape, self.dtype, self.device)
        for layer in range(self.layers):
            keys, values = self.keys[layer], self.values[layer]
            assert keys is not None and values is not None
            copy._reserve(layer, length + room)
            copy.keys[layer][:, :length] = keys[:, :length]  # type: ignore[index]
            copy.values[layer][:, :length] = values[:, :length]  # type: ignore[index]
            copy.lengths[layer] = length
        return copy

    def compact(self) -> SequenceKV:
        """This cache without spare capacity (what the prefix cache stores)."""
        length = self.length
        if all(k is not None and k.shape[1] == length for k in self.keys):
            return self
        return self.fork(length)


class Segment:
    """One sequence's new tokens in a packed forward: ``count`` positions from ``offset``."""

    def __init__(self, cache: SequenceKV, offset: int, count: int, device) -> None:
        self.cache = cache
        self.offset = offset
        self.count = count
        self.mask = None
        if count > 1:  # a chunk attends to its sequence's past and causally to itself
            past = cache.length
            self.mask = torch.ones(count, past + count, dtype=torch.bool, device=device).tril(past)


class _Batch(threading.local):
    segments: list[Segment] = []


_batch = _Batch()


class packed:
    """The segments of a forward's one packed row, in order, while the forward runs."""

    def __init__(self, segments: list[Segment]) -> None:
        self.segments = segments

    def __enter__(self) -> None:
        _batch.segments = self.segments

    def __exit__(self, *exc: object) -> None:
        _batch.segments = []


def ragged_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention for a packed ``[1, heads, tokens, head_dim]`` row, each segment over its
    own sequence's cache."""
    layer = module.layer_idx
    grouped = query.shape[1] != key.shape[1]
    outputs = []
    for segment in _batch.segments:
        new = slice(segment.offset, segment.offset + segment.count)
        keys, values = segment.cache.append(layer, key[0, :, new], value[0, :, new])
        outputs.append(
            F.scaled_dot_product_attention(
                query[:, :, new],
                keys.unsqueeze(0),
                values.unsqueeze(0),
                attn_mask=segment.mask,
                scale=scaling,
                enable_gqa=grouped,
            )
        )
    output = outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)
    return output.transpose(1, 2).contiguous(), None


def register() -> str:
    """Make :func:`ragged_attention` selectable by name on any transformers model."""
    from transformers import AttentionInterface

    AttentionInterface.register(ATTENTION_NAME, ragged_attention)
    return ATTENTION_NAME
