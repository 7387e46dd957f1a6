"""The ``exllamav2`` backend (0.3.2): EXL2 or fp16 models on NVIDIA GPUs.

Imported only inside a worker process, and exllamav2 itself only inside :meth:`load`:
its import JIT-compiles a CUDA extension, sets ``torch.set_num_threads(1)`` and
``CUDA_MODULE_LOADING=LAZY`` for the whole process. The dynamic generator does the
batching: paged (continuous batching) when flash-attn >= 2.5.7 is importable, else
``paged=False`` and one job at a time, which the capabilities then advertise.

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
import os
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

log = logging.getLogger("cortex.neuron.engine")

PAGE_SIZE = 256  # the dynamic generator's page; cache sizes must be multiples of it
CACHE_CLASSES = {
    "fp16": "ExLlamaV2Cache",
    "q8": "ExLlamaV2Cache_Q8",
    "q6": "ExLlamaV2Cache_Q6",
    "q4": "ExLlamaV2Cache_Q4",
}


# ---------------------------------------------------------------------- pure helpers


def round_up(value: int, multiple: int = PAGE_SIZE) -> int:
    return max(multiple, math.ceil(value / multiple) * multiple)


@dataclass(frozen=True)
class CapacityPlan:
    paged: bool
    max_batch_size: int
    cache_tokens: int  # total token budget of the cache, shared by all jobs
    max_seq_len: int  # per job


def plan_capacity(max_seq_len: int, wanted_concurrency: int, paged: bool) -> CapacityPlan:
    """How big the cache is and how many jobs run at once.

    Unpaged mode runs one job (the whole cache is one page); paged mode gives every
    concurrent job room for a full context, so a long request never starves the others.
    """
    seq_len = round_up(max_seq_len)
    if not paged:
        return CapacityPlan(False, 1, seq_len, seq_len)
    batch = max(1, wanted_concurrency)
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
        bias = torch.zeros((vocab_size,), dtype=torch.float16)
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


def visible_devices(devices: list[str]) -> str | None:
    """CUDA_VISIBLE_DEVICES for the requested ``cuda:N`` devices (autosplit starts at 0)."""
    indices = [d.split(":", 1)[1] for d in devices if d.startswith("cuda:")]
    return ",".join(indices) if indices else None


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
        self._devices = list(options.devices)

    def load(self, progress: ProgressCallback) -> Capabilities:
        # Before anything touches CUDA: confine autosplit to the requested GPUs.
        cuda_devices = visible_devices(self._devices)
        if cuda_devices is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda_devices
        try:
            import torch
        except ImportError as exc:
            raise EngineUnavailable(f"backend exllamav2 needs torch: {exc}") from None
        if not torch.cuda.is_available():
            raise EngineUnavailable(
                "backend exllamav2 needs an NVIDIA GPU with CUDA, and torch sees none here"
            )
        try:
            import exllamav2
            from exllamav2 import attn as exl_attn
            from exllamav2 import generator as exl_generator
        except Exception as exc:  # ImportError, or the JIT build failing
            raise EngineUnavailable(
                f"backend exllamav2 could not be imported ({type(exc).__name__}: {exc}); "
                "install cortex-fleet[cuda] and pre-build its extension"
            ) from None
        self._torch, self._x, self._generator_module = torch, exllamav2, exl_generator
        if self.options.cpu_threads > 0:
            torch.set_num_threads(self.options.cpu_threads)  # exllamav2's import set 1

        config = exllamav2.ExLlamaV2Config(self.options.path)
        config.arch_compat_overrides()
        model_max = int(config.max_seq_len)
        wanted = min(self.options.max_seq_len or model_max, model_max)
        paged = paged_attention_available(exl_attn) and not getattr(config, "no_flash_attn", False)
        plan = plan_capacity(wanted, self.options.max_concurrency, paged)
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

    def cancel(self, seq_id: str) -> None:
        job = self._jobs.pop(seq_id, None)
        if job is not None:
            self.generator.cancel(job)

    def step(self) -> list[StepOutput]:
        if not self._jobs:
            return []
        outputs = []
        for result in self.generator.iterate():
            seq_id = result.get("identifier")
            if seq_id not in self._jobs or result.get("stage") != "streaming":
                continue
            tokens = result_token_ids(result)
            finished = None
            if result.get("eos"):
                finished = finish_reason(result.get("eos_reason"))
                self._jobs.pop(seq_id, None)
            outputs.append(StepOutput(seq_id, tokens, finished=finished, prefill_done=True))
        return outputs

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
