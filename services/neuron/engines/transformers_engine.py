"""The ``transformers`` backend: a Hugging Face causal LM on torch, CPU or CUDA.

Generation is ours, token by token: each sequence owns a :class:`~.kv.SequenceKV`, the
model runs with the ragged attention of :mod:`.kv`, and the pipeline's sampler (or a
constraint) picks each token, so cancellation, stop strings and forced tool calls work
between any two tokens.

Two ways to share the model between sequences (the ``batching`` option):

- ``continuous`` (default): each :meth:`TransformersEngine.step` runs one forward that
  decodes every running sequence and, in the same packed row, prefills a chunk of each
  waiting prompt, oldest first, sized from measured costs so that the chunks add about
  half a decode step (:mod:`.chunking`): a long prompt neither stalls the running
  streams nor waits for them to end. Batching changes the shapes of the matrix
  products, so logits differ from a lone run's in the last bits.
- ``round_robin``: one forward per sequence per step, each exactly as it would run alone
  (a seeded request gives the same tokens whatever else runs).

With a prefix cache budget, the KV state of ended sequences is kept (:mod:`.prefix`) and
a new prompt that starts with a kept sequence's tokens prefills only the rest.
"""

from __future__ import annotations

import collections
import logging
import statistics
import time
from dataclasses import dataclass
from typing import Any

import torch

from cortex.services.neuron.engines import chunking, kv
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

SMOOTHING = 0.2  # weight of the newest timing in the engine's running averages
# A decode step's time is the median of the last this many steps without a prompt chunk:
# one step slowed by another process must not shrink every chunk's measured cost.
DECODE_WINDOW = 15
# ... and in one prompt's cost per token, which must follow its growing context
PROMPT_SMOOTHING = 0.5


@dataclass
class _Running:
    seq: Sequence
    cache: kv.SequenceKV
    sampler: Any
    prefilled: int = 0  # prompt tokens in the cache (computed or reused)
    next_input: int | None = None  # the last sampled token, fed at the next decode
    token_s: float | None = None  # measured cost of one of its prompt tokens in a step
    last_chunk: int = 0  # prompt tokens of its previous chunk


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
        self._decode_times: collections.deque[float] = collections.deque(maxlen=DECODE_WINDOW)
        self._decode_s: float | None = None  # a step's time with no prompt chunk in it
        self._prefill_token_s: float | None = None  # a prompt token's cost beside decoding

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
        if self.device == "cpu":
            _column_major_weights(model)
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
            self._forward([(self._new_cache(), [0])])

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
        run.cache.reserve(len(seq.prompt_ids))  # its chunks then never copy it to grow
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
        waiting = [r for r in self._running.values() if r.next_input is None]
        budget = chunking.prefill_budget(self._decode_s, len(decoding), len(waiting))
        prompts = [
            chunking.Waiting(
                len(r.seq.prompt_ids) - r.prefilled,
                r.token_s if r.token_s is not None else self._prefill_token_s,
                r.last_chunk,
            )
            for r in waiting
        ]
        sizes = chunking.plan(prompts, budget)
        chunks = [(r, size) for r, size in zip(waiting, sizes, strict=True) if size]
        if not decoding and not chunks:
            return []
        started = time.perf_counter()
        outputs = self._run_step(decoding, chunks)
        self._learn(decoding, chunks, time.perf_counter() - started)
        return outputs

    def _learn(self, decoding: list[_Running], chunks: list, elapsed: float) -> None:
        """Update the step costs the next chunks are sized by (see :mod:`.chunking`)."""
        if not decoding:
            return
        if not chunks:
            self._decode_times.append(elapsed)
            self._decode_s = statistics.median(self._decode_times)
            return
        if self._decode_s is None:
            return
        token_s = max(0.0, elapsed - self._decode_s) / sum(size for _, size in chunks)
        self._prefill_token_s = _average(self._prefill_token_s, token_s)
        for run, size in chunks:
            run.token_s = _average(run.token_s, token_s, PROMPT_SMOOTHING)
            run.last_chunk = size

    def _round_robin(self) -> list[StepOutput]:
        outputs = []
        for run in list(self._running.values()):
            if run.next_input is None:
                outputs.extend(self._run_step([], [(run, chunking.PREFILL_CHUNK)]))
            else:
                outputs.extend(self._run_step([run], []))
        return outputs

    def _run_step(
        self, decoding: list[_Running], chunks: list[tuple[_Running, int]]
    ) -> list[StepOutput]:
        """One forward: the next token of each decoding run and a prompt chunk of others."""
        segments = [(r.cache, [r.next_input]) for r in decoding if r.next_input is not None]
        for run, size in chunks:
            segments.append((run.cache, run.seq.prompt_ids[run.prefilled : run.prefilled + size]))
        lengths = [cache.length for cache, _ in segments]
        try:
            logits = self._forward(segments)
        except Exception as exc:
            for (cache, _), length in zip(segments, lengths, strict=True):
                cache.truncate(length)
            if len(segments) == 1:
                return [_failed((decoding or [chunks[0][0]])[0], exc)]
            # One bad sequence must not end the others: find it by running each alone.
            log.warning("batched step failed (%s); retrying its %d rows alone", exc, len(segments))
            alone = [self._run_step([run], []) for run in decoding]
            alone += [self._run_step([], [chunk]) for chunk in chunks]
            return [out for outs in alone for out in outs]
        outputs = [self._emit(run, logits[i]) for i, run in enumerate(decoding)]
        for i, (run, _) in enumerate(chunks, start=len(decoding)):
            run.prefilled += len(segments[i][1])
            if run.prefilled < len(run.seq.prompt_ids):
                outputs.append(StepOutput(run.seq.id, []))
            else:
                outputs.append(self._emit(run, logits[i]))
        return outputs

    def _forward(self, segments: list[tuple[kv.SequenceKV, list[int]]]) -> torch.Tensor:
        """Logits after each segment's last token, its tokens fed after its cache's.

        All segments' tokens go in one packed row (see :mod:`.kv`).
        """
        ids: list[int] = []
        positions: list[int] = []
        packed = []
        for cache, tokens in segments:
            packed.append(kv.Segment(cache, len(ids), len(tokens), self.device))
            ids.extend(tokens)
            positions.extend(range(cache.length, cache.length + len(tokens)))
        last = torch.tensor([s.offset + s.count - 1 for s in packed], device=self.device)
        with kv.packed(packed):
            out = self.model(
                input_ids=torch.tensor([ids], dtype=torch.long, device=self.device),
                position_ids=torch.tensor([positions], device=self.device),
                use_cache=False,
                logits_to_keep=last,
            )
        self.forwards += 1
        return out.logits[0].float()

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


def _average(current: float | None, sample: float, weight: float = SMOOTHING) -> float:
    return sample if current is None else current + weight * (sample - current)


def _column_major_weights(model: Any) -> None:
    """Store each linear layer's weight transposed (same values, same memory).

    ``x @ W.T`` with a row-major ``W`` takes oneDNN/MKL's slow path for a few rows: on
    this project's 2-core CPU a 512 -> 1408 projection of 8 rows costs 293 us against 143
    for one row, but 136 us with the weight stored column-major (one row: the same), so
    a decode step of 8 sequences costs little more than one of a single sequence. An
    embedding matrix tied to the output layer keeps its layout (its rows are gathered).
    """
    embeddings = model.get_input_embeddings().weight
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight is not embeddings:
            module.weight.data = module.weight.data.t().contiguous().t()


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
