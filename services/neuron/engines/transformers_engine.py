"""The ``transformers`` backend: a Hugging Face causal LM on torch, CPU or CUDA.

Generation is ours, token by token: each sequence owns a :class:`~.kv.SequenceKV`, the
model runs with the ragged attention of :mod:`.kv`, and the pipeline's sampler (or a
constraint) picks each token, so cancellation, stop strings and forced tool calls work
between any two tokens.

Two ways to share the model between sequences (the ``batching`` option):

- ``continuous`` (default): each :meth:`TransformersEngine.step` decodes every running
  sequence in one forward, then prefills waiting prompts, oldest first, within a token
  budget sized so that it costs half a decode step (measured as it runs; more when more
  sequences wait than run): a long
  prompt neither stalls the running streams nor waits for them to end. Batching changes
  the shapes of the matrix products, so logits differ from a lone run's in the last bits.
- ``round_robin``: one forward per sequence per step, each exactly as it would run alone
  (a seeded request gives the same tokens whatever else runs).

With a prefix cache budget, the KV state of ended sequences is kept (:mod:`.prefix`) and
a new prompt that starts with a kept sequence's tokens prefills only the rest.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

import torch

from cortex.services.neuron.engines import kv
from cortex.services.neuron.engines.base import (
    Capabilities,
    EngineOptions,
    EngineUnavailable,
    ProgressCallback,
    Sequence,
    StepOutput,
)
from cortex.services.neuron.engines.prefix import PrefixCache

log = logging.getLogger("cortex.neuron.engine")

PREFILL_CHUNK = 512  # most prompt tokens per forward
SHORT_PROMPT = 64  # prompts (or rests of prompts) this short are prefilled whole at once
# Fewest beside running streams (also before prefill speed is measured). On a CPU a
# forward costs its fixed overhead too: fewer tokens than this admit a long prompt too slowly.
MIN_PREFILL_CHUNK = 16
# Prompt tokens a step prefills beside running streams cost about this share of a decode
# step, so their inter-token gaps grow by about as much while a long prompt is admitted.
PREFILL_SHARE = 0.5
SMOOTHING = 0.2  # weight of the newest timing in the running averages


@dataclass
class _Running:
    seq: Sequence
    cache: kv.SequenceKV
    sampler: Any
    prefilled: int = 0  # prompt tokens in the cache (computed or reused)
    next_input: int | None = None  # the last sampled token, fed at the next decode


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
        self.prefix = PrefixCache(options.prefix_cache_bytes)
        self.forwards = 0  # model forward passes, for the neuron's status
        self._running: dict[str, _Running] = {}
        self._layout: tuple[int, int, int] = (0, 0, 0)  # layers, kv heads, head dim
        self._dtype = torch.float32
        self._decode_s: float | None = None  # a decode step's time
        self._prefill_token_s: float | None = None  # a prompt token's share of a chunk

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
            model = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, attn_implementation=kv.register()
            )
        # transformers wraps .to in a decorator whose type mypy reads as a plain function
        model.to(self.device)  # type: ignore[arg-type]
        model.eval()
        self.model = model
        self._dtype = dtype
        text = model.config.get_text_config()
        heads = int(text.num_attention_heads)
        head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
        kv_heads = getattr(text, "num_key_value_heads", None) or heads
        self._layout = (int(text.num_hidden_layers), int(kv_heads), int(head_dim))
        model_max = _model_max_seq_len(config)
        wanted = self.options.max_seq_len or model_max
        concurrency = max(1, self.options.max_concurrency)
        if self.options.batching == "continuous":
            note = f"continuous batching: up to {concurrency} sequences per forward"
        else:
            note = "round-robin decoding: one forward per sequence per step"
        self.capabilities = Capabilities(
            max_concurrency=concurrency,
            max_seq_len=min(wanted, model_max),
            vocab_size=int(model.config.vocab_size),
            devices=[self.device],
            cache_type="fp16" if dtype is not torch.float32 else "fp32",
            notes=[note],
            batching=self.options.batching,
            prefix_cache_bytes=self.prefix.budget,
        )
        self._warm_up()
        return self.capabilities

    def _warm_up(self) -> None:
        """One tiny forward so the first request does not pay for lazy initialisation."""
        with torch.inference_mode():
            self._forward([[0]], [0], [self._new_cache()])

    def _new_cache(self) -> kv.SequenceKV:
        return kv.SequenceKV(*self._layout, self._dtype, self.device)

    # ------------------------------------------------------------------ sequences

    def add(self, seq: Sequence) -> None:
        assert self.capabilities is not None
        sampler = self._sampler_factory(
            seq.params, self.capabilities.vocab_size, seq.prompt_ids, seq.constraint
        )
        cache, reused = self.prefix.take(seq.prompt_ids)
        seq.cached_tokens = reused
        run = _Running(seq, cache or self._new_cache(), sampler, prefilled=reused)
        self._running[seq.id] = run

    def cancel(self, seq_id: str) -> None:
        run = self._running.pop(seq_id, None)
        if run is not None:
            self._keep(run)

    def step(self) -> list[StepOutput]:
        with torch.inference_mode():
            if self.options.batching == "round_robin":
                outputs = self._round_robin()
            else:
                outputs = self._continuous()
        for out in outputs:
            if out.finished:
                run = self._running.pop(out.seq_id, None)
                if run is not None and out.finished != "error":
                    self._keep(run)
        return outputs

    def _continuous(self) -> list[StepOutput]:
        decoding = [r for r in self._running.values() if r.next_input is not None]
        outputs = []
        if decoding:
            started = time.perf_counter()
            outputs.extend(self._decode(decoding))
            self._decode_s = _average(self._decode_s, time.perf_counter() - started)
        # Then prompts, oldest first, within one step's token budget: short prompts that
        # arrive together all start in this step; a long one goes on in the next.
        waiting = [r for r in self._running.values() if r.next_input is None]
        budget = self._prefill_budget(len(decoding), len(waiting))
        for run in waiting:
            rest = len(run.seq.prompt_ids) - run.prefilled
            if rest <= SHORT_PROMPT:
                outputs.append(self._prefill(run, rest))  # a short prompt starts at once
            elif budget > 0:
                outputs.append(self._prefill(run, min(budget, rest)))
                budget -= min(budget, rest)
        return outputs

    def _round_robin(self) -> list[StepOutput]:
        outputs = []
        for run in list(self._running.values()):
            if run.next_input is None:
                outputs.append(self._prefill(run, PREFILL_CHUNK))
            else:
                outputs.extend(self._decode([run]))
        return outputs

    def _prefill_budget(self, decoding: int, waiting: int) -> int:
        """Prompt tokens for this step beside ``decoding`` streams.

        PREFILL_SHARE of a decode step's time per step, times how many more sequences
        wait than run: one long prompt slows eight streams by half, while a burst of new
        requests beside a few streams is not starved of its first tokens.
        """
        if not decoding:
            return PREFILL_CHUNK
        if self._decode_s is None or self._prefill_token_s is None:
            return MIN_PREFILL_CHUNK
        share = PREFILL_SHARE * max(1.0, waiting / decoding)
        fits = int(share * self._decode_s / self._prefill_token_s)
        return max(MIN_PREFILL_CHUNK, min(PREFILL_CHUNK, fits))

    def _decode(self, runs: list[_Running]) -> list[StepOutput]:
        lengths = [r.cache.length for r in runs]
        try:
            inputs = [[r.next_input] for r in runs if r.next_input is not None]
            logits = self._forward(inputs, lengths, [r.cache for r in runs])
        except Exception as exc:
            for run, length in zip(runs, lengths, strict=True):
                run.cache.truncate(length)
            if len(runs) == 1:
                return [_failed(runs[0], exc)]
            # One bad row must not end the others: find it by running each alone.
            log.warning("batched decode failed (%s); retrying its %d rows alone", exc, len(runs))
            return [out for run in runs for out in self._decode([run])]
        return [self._emit(run, logits[i]) for i, run in enumerate(runs)]

    def _prefill(self, run: _Running, size: int) -> StepOutput:
        prompt = run.seq.prompt_ids
        chunk = prompt[run.prefilled : run.prefilled + size]
        length = run.cache.length
        started = time.perf_counter()
        try:
            logits = self._forward([chunk], [length], [run.cache])
        except Exception as exc:
            run.cache.truncate(length)
            return _failed(run, exc)
        share = (time.perf_counter() - started) / len(chunk)
        self._prefill_token_s = _average(self._prefill_token_s, share)
        run.prefilled += len(chunk)
        if run.prefilled < len(prompt):
            return StepOutput(run.seq.id, [])
        return self._emit(run, logits[0])

    def _forward(self, ids: list[list[int]], starts: list[int], caches: list[kv.SequenceKV]):
        """Logits of each row's last position; row i's positions start at ``starts[i]``."""
        input_ids = torch.tensor(ids, dtype=torch.long, device=self.device)
        positions = torch.arange(input_ids.shape[1], device=self.device) + torch.tensor(
            starts, device=self.device
        ).unsqueeze(1)
        with kv.rows_of(caches):
            out = self.model(
                input_ids=input_ids, position_ids=positions, use_cache=False, logits_to_keep=1
            )
        self.forwards += 1
        return out.logits[:, -1].float()

    def _emit(self, run: _Running, logits: torch.Tensor) -> StepOutput:
        seq = run.seq
        try:
            token = int(run.sampler.sample(logits, seq.generated))
        except Exception as exc:
            return _failed(run, exc)
        seq.generated.append(token)
        run.next_input = token
        finished = None
        if token in seq.eos_ids:
            finished = "stop"
        elif len(seq.generated) >= seq.max_new_tokens:
            finished = "length"
        return StepOutput(seq.id, [token], finished=finished)

    def _keep(self, run: _Running) -> None:
        """Offer an ended sequence's KV state to the prefix cache."""
        fed = run.seq.prompt_ids + run.seq.generated
        self.prefix.keep(fed[: run.cache.length], run.cache)

    # ------------------------------------------------------------------ figures

    def figures(self) -> dict[str, int]:
        return {"forwards": self.forwards, **self.prefix.figures()}

    def memory(self) -> dict[str, int]:
        if self.model is None:
            return {}
        if self.device.startswith("cuda"):
            return {self.device: int(torch.cuda.memory_reserved(torch.device(self.device)))}
        weights = sum(p.numel() * p.element_size() for p in self.model.parameters())
        return {"cpu": int(weights) + self.prefix.size}

    def close(self) -> None:
        self._running.clear()
        self.prefix.clear()
        self.model = None


def _failed(run: _Running, exc: BaseException) -> StepOutput:
    log.error("sequence %s failed: %s: %s", run.seq.id, type(exc).__name__, exc)
    return StepOutput(run.seq.id, [], finished="error", error=f"{type(exc).__name__}: {exc}")


def _average(current: float | None, sample: float) -> float:
    return sample if current is None else current + SMOOTHING * (sample - current)


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
