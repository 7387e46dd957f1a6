"""The ``transformers`` backend: a Hugging Face causal LM on torch, CPU or CUDA.

Generation is ours, token by token: we call the model's forward with a per-sequence
``DynamicCache`` and pick each token with the pipeline's sampler (or a constraint), so
cancellation, stop strings and forced tool calls work between any two tokens.

Concurrency is round-robin: every running sequence owns its own KV cache and each
:meth:`step` advances each of them by one token (a long prompt is prefilled in chunks,
so it cannot starve the others for more than one chunk). On a CPU a padded batch buys
little and costs masks and padding; round-robin keeps every sequence's output identical
to what it would be alone, which is what makes seeded requests reproducible.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import torch

from cortex.services.neuron.engines.base import (
    Capabilities,
    EngineOptions,
    EngineUnavailable,
    ProgressCallback,
    Sequence,
    StepOutput,
)

log = logging.getLogger("cortex.neuron.engine")

PREFILL_CHUNK = 512  # prompt tokens per forward while other sequences wait


@dataclass
class _Running:
    seq: Sequence
    cache: Any
    sampler: Any
    prefilled: int = 0  # prompt tokens already in the cache
    next_input: list[int] = field(default_factory=list)


def torch_dtype_for(device: str, config_dtype: str | None) -> torch.dtype:
    """float32 on the CPU (bf16 matmuls are slow there); the model's own dtype on CUDA."""
    if device == "cpu":
        return torch.float32
    by_name = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    dtype = by_name.get(str(config_dtype).removeprefix("torch."), torch.float16)
    if dtype is torch.bfloat16 and not torch.cuda.is_bf16_supported():
        return torch.float16
    return dtype


class TransformersEngine:
    def __init__(self, options: EngineOptions, sampler_factory) -> None:
        self.options = options
        # (params, vocab_size, prompt_ids, constraint) -> an object with sample(logits, ids)
        self._sampler_factory = sampler_factory
        self.device = (options.devices or ["cpu"])[0]
        self.model: Any = None
        self.capabilities: Capabilities | None = None
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ load

    def load(self, progress: ProgressCallback) -> Capabilities:
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineUnavailable(
                f"device {self.device} requested but torch sees no CUDA device on this host"
            )
        if self.options.cpu_threads > 0:
            torch.set_num_threads(self.options.cpu_threads)
        from transformers import AutoConfig, AutoModelForCausalLM

        path = self.options.path
        config = AutoConfig.from_pretrained(path)
        dtype = torch_dtype_for(
            self.device, getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
        )
        with _weight_progress(progress):
            model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype)
        # transformers wraps .to in a decorator whose type mypy reads as a plain function
        model.to(self.device)  # type: ignore[arg-type]
        model.eval()
        self.model = model
        model_max = _model_max_seq_len(config)
        wanted = self.options.max_seq_len or model_max
        max_seq_len = min(wanted, model_max)
        self.capabilities = Capabilities(
            max_concurrency=max(1, self.options.max_concurrency),
            max_seq_len=max_seq_len,
            vocab_size=int(model.config.vocab_size),
            devices=[self.device],
            cache_type="fp16" if dtype is not torch.float32 else "fp32",
            notes=["round-robin decoding, one KV cache per sequence"],
        )
        self._warm_up()
        return self.capabilities

    def _warm_up(self) -> None:
        """One tiny forward so the first request does not pay for lazy initialisation."""
        from transformers import DynamicCache

        with torch.inference_mode():
            ids = torch.tensor([[0]], device=self.device)
            self.model(input_ids=ids, past_key_values=DynamicCache(), use_cache=True)

    # ------------------------------------------------------------------ sequences

    @property
    def active(self) -> int:
        return len(self._running)

    def add(self, seq: Sequence) -> None:
        from transformers import DynamicCache

        assert self.capabilities is not None
        sampler = self._sampler_factory(
            seq.params, self.capabilities.vocab_size, seq.prompt_ids, seq.constraint
        )
        self._running[seq.id] = _Running(seq=seq, cache=DynamicCache(), sampler=sampler)

    def cancel(self, seq_id: str) -> None:
        self._running.pop(seq_id, None)

    def step(self) -> list[StepOutput]:
        outputs = []
        with torch.inference_mode():
            for run in list(self._running.values()):
                out = self._advance(run)
                outputs.append(out)
                if out.finished:
                    self._running.pop(run.seq.id, None)
        return outputs

    def _advance(self, run: _Running) -> StepOutput:
        seq = run.seq
        prompt = seq.prompt_ids
        if run.prefilled < len(prompt):
            chunk = prompt[run.prefilled : run.prefilled + PREFILL_CHUNK]
            logits = self._forward(chunk, run.cache)
            run.prefilled += len(chunk)
            if run.prefilled < len(prompt):
                return StepOutput(seq.id, [])
        else:
            logits = self._forward(run.next_input, run.cache)
        token = self._pick(run, logits)
        seq.generated.append(token)
        run.next_input = [token]
        finished = None
        if token in seq.eos_ids:
            finished = "stop"
        elif len(seq.generated) >= seq.max_new_tokens:
            finished = "length"
        return StepOutput(seq.id, [token], finished=finished, prefill_done=True)

    def _forward(self, ids: list[int], cache: Any) -> torch.Tensor:
        input_ids = torch.tensor([ids], dtype=torch.long, device=self.device)
        out = self.model(input_ids=input_ids, past_key_values=cache, use_cache=True)
        return out.logits[0, -1].float()

    def _pick(self, run: _Running, logits: torch.Tensor) -> int:
        return int(run.sampler.sample(logits, run.seq.generated))

    # ------------------------------------------------------------------ memory

    def memory(self) -> dict[str, int]:
        if self.model is None:
            return {}
        if self.device.startswith("cuda"):
            return {self.device: int(torch.cuda.memory_reserved(torch.device(self.device)))}
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return {"cpu": int(weights)}

    def close(self) -> None:
        self._running.clear()
        self.model = None


def _model_max_seq_len(config: Any) -> int:
    for name in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return 2048


class _weight_progress:
    """Route transformers' "Loading weights" progress bar to our callback.

    transformers >= 5 exposes ``logging.set_tqdm_hook``; without it we report only the
    start and the end of the load.
    """

    def __init__(self, progress: ProgressCallback) -> None:
        self.progress = progress
        self.previous: Any = None
        self.hooked = False

    def __enter__(self) -> None:
        from transformers.utils import logging as hf_logging

        self.progress(0, 1)
        setter = getattr(hf_logging, "set_tqdm_hook", None)
        if setter is not None:
            self.previous = setter(self._hook)
            self.hooked = True

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging as hf_logging

        if self.hooked:
            hf_logging.set_tqdm_hook(self.previous)

    def _hook(self, factory, args, kwargs):
        return _ProgressBar(self.progress, *args, **kwargs)


class _ProgressBar:
    """The tqdm surface transformers uses, reporting (done, total) instead of drawing."""

    def __init__(self, progress: ProgressCallback, iterable=None, *args, **kwargs) -> None:
        self._progress = progress
        self._iterable = iterable
        total = kwargs.get("total")
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total = int(total or 0)
        self.n = 0

    def __iter__(self):
        for item in self._iterable or ():
            yield item
            self.update(1)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.total:
            self._progress(min(self.n, self.total), self.total)

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        pass

    def __getattr__(self, name: str):
        # set_description, set_postfix, refresh, ...: nothing to draw.
        return lambda *args, **kwargs: None
