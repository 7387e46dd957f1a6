"""The ``exllamav2`` backend (0.3.2): EXL2 or fp16 models on NVIDIA GPUs.

Imported only inside a worker process, and exllamav2 itself only inside :meth:`load`,
after ``require_extension`` has checked that its compiled extension fits this torch
(else its import would JIT-compile it for minutes); the import sets
``torch.set_num_threads(1)`` and ``CUDA_MODULE_LOADING=LAZY`` for the whole process.
The dynamic generator does the batching: paged (continuous batching) when flash-attn
>= 2.5.7 is importable, else ``paged=False`` and one job at a time, which the
capabilities then advertise.

Everything OpenAI-shaped is set explicitly per job: every sampler field (exllamav2's
defaults are temperature 0.8, top_k 50, top_p 0.8, repetition penalty 1.025), every EOS
id of generation_config.json as a stop condition, and ``eos_reason`` mapped to a finish
reason. Stop strings, markers and tool calls are handled by the token pipeline from the
streamed token ids, exactly as for the transformers backend.

The pure helpers (sampler mapping, capacity plan, cache class, finish reason) take the
exllamav2 module or classes as arguments, so they are tested without a GPU.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

from cortex.services.neuron.engines.base import (
    Capabilities,
    EngineOptions,
    EngineUnavailable,
    ProgressCallback,
    Sequence,
    StepOutput,
)
from cortex.services.neuron.engines.exllamav2_install import require_extension

log = logging.getLogger("cortex.neuron.engine")

PAGE_SIZE = 256  # the dynamic generator's page; cache sizes must be multiples of it
MAX_Q_SIZE = 8  # the dynamic generator's default max_q_size: tokens per job per forward
VOCAB_PAD = 32  # the generator's logits are padded_vocab_size wide, a multiple of this
CACHE_CLASSES = {
    "fp16": "ExLlamaV2Cache",
    "q8": "ExLlamaV2Cache_Q8",
    "q6": "ExLlamaV2Cache_Q6",
    "q4": "ExLlamaV2Cache_Q4",
}


# ---------------------------------------------------------------------- pure helpers


def round_up(value: int, multiple: int = PAGE_SIZE) -> int:
    return max(multiple, math.ceil(value / multiple) * multiple)


def padded_vocab_size(vocab_size: int) -> int:
    """The width of exllamav2's logits (``ExLlamaV2DynamicGenerator.padded_vocab_size``)."""
    return round_up(vocab_size, VOCAB_PAD)


@dataclass(frozen=True)
class CapacityPlan:
    paged: bool
    max_batch_size: int
    cache_tokens: int  # total token budget of the cache, shared by all jobs
    max_seq_len: int  # per job


def plan_capacity(
    max_seq_len: int, wanted_concurrency: int, paged: bool, max_forward_tokens: int
) -> CapacityPlan:
    """How big the cache is and how many jobs run at once.

    Unpaged mode runs one job (the whole cache is one page); paged mode gives every
    concurrent job room for a full context, so a long request never starves the others.
    ``max_forward_tokens`` is the model config's ``max_batch_size * max_input_len``: the
    dynamic generator asserts that ``MAX_Q_SIZE * max_batch_size`` fits in it, so the
    batch is clamped to that.
    """
    seq_len = round_up(max_seq_len)
    if not paged:
        return CapacityPlan(False, 1, seq_len, seq_len)
    batch = max(1, min(wanted_concurrency, max_forward_tokens // MAX_Q_SIZE))
    return CapacityPlan(True, batch, round_up(seq_len * batch), seq_len)


def paged_attention_available(attn_module: Any) -> bool:
    """flash-attn >= 2.5.7 is what paged mode (continuous batching) needs."""
    return bool(getattr(attn_module, "has_flash_attn_with_paged", False))


def cache_class(exllamav2_module: Any, cache_type: str) -> Any:
    name = CACHE_CLASSES.get(cache_type)
    if name is None:
        raise EngineUnavailable(
            f"unknown cache type {cache_type!r}; use one of {', '.join(CACHE_CLASSES)}"
        )
    return getattr(exllamav2_module, name)


def sampler_settings(settings_class: Any, params: Any, vocab_size: int, torch: Any = None) -> Any:
    """An ``ExLlamaV2Sampler.Settings`` with every field set from ``SamplingParams``.

    Greedy is top_k 1 at temperature 1 (exllamav2 treats temperature < 0.01 as greedy
    too, but top_k 1 says it without relying on that). Presence and frequency penalties
    in exllamav2 also count prompt tokens within ``token_repetition_range``; the range
    is the whole context (-1), the closest match to OpenAI's rule.
    """
    s = settings_class()
    greedy = params.temperature == 0.0
    s.temperature = 1.0 if greedy else float(params.temperature)
    s.top_k = 1 if greedy else int(params.top_k or 0)
    s.top_p = 0.0 if greedy or params.top_p >= 1.0 else float(params.top_p)
    s.min_p = 0.0 if greedy else float(params.min_p)
    s.top_a = 0.0
    s.tfs = 0.0
    s.typical = 0.0
    s.skew = 0.0
    s.temperature_last = False
    s.smoothing_factor = 0.0
    s.mirostat = False
    s.dry_multiplier = 0.0
    s.xtc_probability = 0.0
    s.token_repetition_penalty = float(params.repetition_penalty)
    s.token_repetition_range = -1
    s.token_repetition_decay = 0
    s.token_frequency_penalty = float(params.frequency_penalty)
    s.token_presence_penalty = float(params.presence_penalty)
    if params.logit_bias and torch is not None:
        # Added to the logits in place by ext_c.fast_fadd_cpu, which takes float32 only
        # and a tensor whose size divides the logits' (batch x padded vocabulary).
        bias = torch.zeros((padded_vocab_size(vocab_size),), dtype=torch.float32)
        for token_id, value in params.logit_bias.items():
            bias[int(token_id)] = float(value)
        s.token_bias = bias
    return s


def finish_reason(eos_reason: str | None) -> str:
    """exllamav2's ``eos_reason`` as the engine-level reason the pipeline expects."""
    return "length" if eos_reason == "max_new_tokens" else "stop"


def result_token_ids(result: dict) -> list[int]:
    """The new token ids of one streaming result of ``ExLlamaV2DynamicGenerator.iterate``.

    exllamav2 holds tokens back while their text is an incomplete character. A job that
    ends on a stop token does not release them into ``token_ids``: they, and the stop
    token last, come under ``result["held"]``. Both are the sequence's output.
    """
    tokens: list[int] = []
    for source in (result, result.get("held") or {}):
        ids = source.get("token_ids")
        if ids is not None and ids.numel():
            tokens += ids.view(-1).tolist()
    return tokens


# ---------------------------------------------------------------------- the engine


class ExLlamaV2Engine:
    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self.capabilities: Capabilities | None = None
        self.model: Any = None
        self.cache: Any = None
        self.generator: Any = None
        self.tokenizer: Any = None
        self._x: Any = None  # the exllamav2 module
        self._generator_module: Any = None
        self._torch: Any = None
        self._jobs: dict[str, Any] = {}
        self._filters: dict[str, Any] = {}  # a constrained job's filter, for its error
        self._devices = list(options.devices)

    def load(self, progress: ProgressCallback) -> Capabilities:
        # CUDA_VISIBLE_DEVICES was set when this worker was spawned (load_env): CUDA
        # reads it once, at its first use, which may be before this load.
        try:
            import torch
        except ImportError as exc:
            raise EngineUnavailable(f"backend exllamav2 needs torch: {exc}") from None
        if not torch.cuda.is_available():
            raise EngineUnavailable(
                "backend exllamav2 needs an NVIDIA GPU with CUDA, and torch sees none here"
            )
        require_extension(torch)
        try:
            import exllamav2
            from exllamav2 import attn as exl_attn
            from exllamav2 import generator as exl_generator
        except Exception as exc:
            raise EngineUnavailable(
                f"backend exllamav2 could not be imported ({type(exc).__name__}: {exc})"
            ) from None
        self._torch, self._x, self._generator_module = torch, exllamav2, exl_generator
        if self.options.cpu_threads > 0:
            torch.set_num_threads(self.options.cpu_threads)  # exllamav2's import set 1

        config = exllamav2.ExLlamaV2Config(self.options.path)
        config.arch_compat_overrides()
        model_max = int(config.max_seq_len)
        wanted = min(self.options.max_seq_len or model_max, model_max)
        paged = paged_attention_available(exl_attn) and not getattr(config, "no_flash_attn", False)
        plan = plan_capacity(
            wanted,
            self.options.max_concurrency,
            paged,
            int(config.max_batch_size) * int(config.max_input_len),
        )
        config.max_seq_len = plan.max_seq_len
        self.model = exllamav2.ExLlamaV2(config)
        self.cache = cache_class(exllamav2, self.options.cache_type)(
            self.model, max_seq_len=plan.cache_tokens, lazy=True
        )
        self.model.load_autosplit(self.cache, callback=progress)
        self.tokenizer = exllamav2.ExLlamaV2Tokenizer(config)
        self.generator = exl_generator.ExLlamaV2DynamicGenerator(
            model=self.model,
            cache=self.cache,
            tokenizer=self.tokenizer,
            max_batch_size=plan.max_batch_size,
            max_seq_len=plan.max_seq_len,
            paged=plan.paged,
        )
        self.generator.warmup()
        notes = [
            "paged attention: continuous batching"
            if plan.paged
            else "no flash-attn >= 2.5.7: unpaged, one request at a time"
        ]
        if plan.paged and plan.max_batch_size < self.options.max_concurrency:
            notes.append(
                f"max_concurrency {self.options.max_concurrency} clamped to "
                f"{plan.max_batch_size}: exllamav2 needs {MAX_Q_SIZE} x batch <= "
                f"max_input_len ({config.max_input_len})"
            )
        self.capabilities = Capabilities(
            max_concurrency=plan.max_batch_size,
            max_seq_len=min(wanted, plan.max_seq_len),
            vocab_size=int(config.vocab_size),
            devices=self._devices or ["cuda:0"],
            cache_type=self.options.cache_type,
            notes=notes,
        )
        return self.capabilities

    # ------------------------------------------------------------------ sequences

    @property
    def active(self) -> int:
        return len(self._jobs)

    def add(self, seq: Sequence) -> None:
        torch = self._torch
        assert self.capabilities is not None
        settings = sampler_settings(
            self._generator_module.ExLlamaV2Sampler.Settings,
            seq.params,
            self.capabilities.vocab_size,
            torch,
        )
        filters = []
        if seq.constraint is not None:
            from cortex.services.neuron.engines.exllamav2_filter import constraint_filter

            filters.append(
                constraint_filter(self.model, self.tokenizer, seq.constraint, seq.eos_ids)
            )
        job = self._generator_module.ExLlamaV2DynamicJob(
            input_ids=torch.tensor([seq.prompt_ids], dtype=torch.long),
            max_new_tokens=seq.max_new_tokens,
            gen_settings=settings,
            seed=seq.params.seed,
            stop_conditions=list(seq.eos_ids),
            decode_special_tokens=True,
            filters=filters or None,
            identifier=seq.id,
        )
        self.generator.enqueue(job)
        self._jobs[seq.id] = job
        if filters:
            self._filters[seq.id] = filters[0]

    def cancel(self, seq_id: str) -> None:
        self._filters.pop(seq_id, None)
        job = self._jobs.pop(seq_id, None)
        if job is not None:
            self.generator.cancel(job)

    def step(self) -> list[StepOutput]:
        if not self._jobs:
            return []
        return [
            self._output(result)
            for result in self.generator.iterate()
            if result.get("identifier") in self._jobs and result.get("stage") == "streaming"
        ]

    def _output(self, result: dict) -> StepOutput:
        seq_id = result["identifier"]
        tokens = result_token_ids(result)
        if not result.get("eos"):
            return StepOutput(seq_id, tokens, prefill_done=True)
        self._jobs.pop(seq_id, None)
        failed = self._filters.pop(seq_id, None)
        if failed is not None and failed.error is not None:
            return StepOutput(seq_id, tokens, "error", prefill_done=True, error=failed.error)
        return StepOutput(
            seq_id, tokens, finish_reason(result.get("eos_reason")), prefill_done=True
        )

    # ------------------------------------------------------------------ memory

    def memory(self) -> dict[str, int]:
        torch = self._torch
        if torch is None or not torch.cuda.is_available():
            return {}
        names = self._devices or [f"cuda:{i}" for i in range(torch.cuda.device_count())]
        used = {}
        for local, name in enumerate(names[: torch.cuda.device_count()]):
            used[name] = int(torch.cuda.memory_reserved(local))
        return used

    def close(self) -> None:
        for seq_id in list(self._jobs):
            self.cancel(seq_id)
        if self.model is not None:
            self.model.unload()
        self.model = self.cache = self.generator = self.tokenizer = None
