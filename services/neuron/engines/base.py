"""The engine protocol: what a worker needs from a backend, and nothing more.

An engine owns a model (and its device context) inside one worker process. The worker's
engine thread is its only caller: it adds sequences, calls :meth:`Engine.step` in a loop
and reads back the token ids each step produced. Everything model-independent (decoding
ids to text, stop strings, tool-call markers) happens in the worker, outside the engine,
so an exllamav3 or llama.cpp engine would implement just this.

This module is torch-free: the supervisor imports the data types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

ProgressCallback = Callable[[int, int], None]
"""Called with (modules done, modules total) while a model loads."""


@dataclass
class EngineOptions:
    """How to load: fixed per worker."""

    path: str
    devices: list[str]
    max_seq_len: int | None = None  # None: the model's own
    cache_type: str = "fp16"
    max_concurrency: int = 1
    cpu_threads: int = 0
    batching: str = "continuous"  # or "round_robin" (engines that batch)
    prefix_cache_bytes: int = 0  # KV state of ended sequences kept for reuse; 0: none


@dataclass
class Capabilities:
    """What the loaded engine can do; the supervisor sizes its queue from it."""

    max_concurrency: int
    max_seq_len: int
    vocab_size: int
    devices: list[str]
    cache_type: str | None = None
    notes: list[str] = field(default_factory=list)
    batching: str | None = None  # "continuous" | "round_robin"; None: the engine's own
    prefix_cache_bytes: int = 0


@dataclass
class Sequence:
    """One generation in the engine: prompt ids in, one token id per step out.

    ``sampler`` picks a token from logits (the pipeline's Sampler, or an engine-native
    equivalent built from ``params``); ``constraint`` (optional) restricts which tokens
    may follow, for forced tool calls and JSON output.
    """

    id: str
    prompt_ids: list[int]
    max_new_tokens: int
    params: Any  # pipeline.sampling.SamplingParams
    eos_ids: tuple[int, ...] = ()
    constraint: Any = None
    generated: list[int] = field(default_factory=list)
    cached_tokens: int = 0  # prompt tokens the engine reused instead of computing


@dataclass
class StepOutput:
    """What one sequence produced in one step: new token ids, and whether it ended."""

    seq_id: str
    token_ids: list[int]
    finished: str | None = None  # "stop" (EOS), "length", "error", or None while running
    error: str | None = None  # why, when this sequence alone failed
    prefill_done: bool = False  # read by nothing; exllamav2_engine.py still sets it


class Engine(Protocol):
    capabilities: Capabilities

    def load(self, progress: ProgressCallback) -> Capabilities:
        """Load weights and allocate caches; report progress per module."""
        ...

    def add(self, seq: Sequence) -> None:
        """Start a sequence; at most ``capabilities.max_concurrency`` run at once."""
        ...

    def cancel(self, seq_id: str) -> None:
        """Drop a sequence now; its cache is freed before the next step."""
        ...

    def step(self) -> list[StepOutput]:
        """Advance every running sequence by (at most) one token."""
        ...

    def figures(self) -> dict[str, int]:
        """Counters for the neuron's status (forwards, prefix cache); may be empty."""
        ...

    def memory(self) -> dict[str, int]:
        """Bytes this engine holds per device id (as the engine itself sees it)."""
        ...

    def close(self) -> None: ...


class EngineUnavailable(Exception):
    """A backend cannot run here (no CUDA, package missing): a clear message for a 400."""
