"""FakeExLlamaV2: stand-ins for the exllamav2 0.3.2 names the engine touches.

Why a fake: exllamav2's kernels need its compiled CUDA extension and a GPU, and this
host has neither. The engine's helpers only read or set attributes of these objects, so
the fakes copy exactly that surface from exllamav2 0.3.2, and the checks the real code
makes on what it is given, each copied from the file named beside it (the source is in
PyPI's exllamav2-0.3.2-py3-none-any.whl). The Settings defaults are the real ones,
which is the point of the mapping test: every field must be overwritten.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from types import SimpleNamespace

import torch


@dataclass
class FakeExLlamaV2SamplerSettings:
    temperature: float = 0.8
    top_k: int = 50
    top_p: float = 0.8
    min_p: float = 0.0
    top_a: float = 0.0
    tfs: float = 0.0
    typical: float = 0.0
    skew: float = 0.0
    temperature_last: bool = False
    smoothing_factor: float = 0.0
    mirostat: bool = False
    dry_multiplier: float = 0.0
    xtc_probability: float = 0.0
    token_repetition_penalty: float = 1.025
    token_repetition_range: int = -1
    token_repetition_decay: int = 0
    token_frequency_penalty: float = 0.0
    token_presence_penalty: float = 0.0
    token_bias: object = None


class FakeExLlamaV2Cache:
    pass


class FakeExLlamaV2Cache_Q4:
    pass


class FakeExLlamaV2Cache_Q6:
    pass


class FakeExLlamaV2Cache_Q8:
    pass


FakeExLlamaV2Module = SimpleNamespace(
    ExLlamaV2Cache=FakeExLlamaV2Cache,
    ExLlamaV2Cache_Q4=FakeExLlamaV2Cache_Q4,
    ExLlamaV2Cache_Q6=FakeExLlamaV2Cache_Q6,
    ExLlamaV2Cache_Q8=FakeExLlamaV2Cache_Q8,
)
FakeExLlamaV2AttnWithPaged = SimpleNamespace(has_flash_attn_with_paged=True)
FakeExLlamaV2AttnWithoutFlash = SimpleNamespace(
    has_flash_attn=False, has_flash_attn_with_paged=False
)


@dataclass
class FakeExLlamaV2Config:
    """config.py: ExLlamaV2Config.__init__'s defaults for the batch limits."""

    vocab_size: int
    max_seq_len: int = 4096
    max_batch_size: int = 1
    max_input_len: int = 2048


def fake_fast_fadd_cpu(a: torch.Tensor, b: torch.Tensor) -> None:
    """exllamav2_ext/ext_sampling.cpp fast_fadd_cpu, how sampler.py adds token_bias to
    the logits: both float32, b's size dividing a's, added in place per row."""
    if a.dtype != torch.float32 or b.dtype != torch.float32:
        raise RuntimeError("Expected tensor of type float")  # TORCH_CHECK_DTYPE(.., kFloat)
    n, m = a.numel(), b.numel()
    if (n // m) * m != n:
        raise RuntimeError("a and b are incompatible sizes")
    a.view(-1, m).add_(b)


class FakeExLlamaV2Filter:
    """generator/filters/base.py ExLlamaV2Filter: what a subclass inherits."""

    def __init__(self, model, tokenizer) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.sequence_str = ""
        self.background_result = None


def install_filter_module(monkeypatch) -> None:
    """Make ``from exllamav2.generator.filters import ExLlamaV2Filter`` find the fake."""
    filters = SimpleNamespace(ExLlamaV2Filter=FakeExLlamaV2Filter)
    generator = SimpleNamespace(filters=filters)
    monkeypatch.setitem(sys.modules, "exllamav2", SimpleNamespace(generator=generator))
    monkeypatch.setitem(sys.modules, "exllamav2.generator", generator)
    monkeypatch.setitem(sys.modules, "exllamav2.generator.filters", filters)


def fake_filtered_token(filters: list) -> tuple[int | None, bool]:
    """generator/sampler.py ExLlamaV2Sampler.sample, its filter step: the pass sets of
    all filters intersected; an empty one is an AssertionError raised out of
    generator.iterate(), for every job of the batch; a single passing token is taken
    as is, and ends the filter if it is among the end tokens. (None, False) when the
    filters leave a choice (the real sampler then draws among them)."""
    pass_tokens, end_tokens = None, None
    for f in filters:
        pt, et = f.next()
        pass_tokens = pt if pass_tokens is None else pass_tokens & pt
        end_tokens = et if end_tokens is None else end_tokens | et
    if pass_tokens is None:
        return None, False
    assert len(pass_tokens), "Filter excluded all tokens"
    if len(pass_tokens) == 1:
        token = next(iter(pass_tokens))
        return token, token in end_tokens
    return None, False


class FakeExLlamaV2DynamicJob:
    def __init__(self, *, input_ids, max_new_tokens, identifier, filters=None, **settings):
        self.input_ids = input_ids
        self.max_new_tokens = max_new_tokens
        self.identifier = identifier
        self.filters = filters or []
        self.settings = settings
        self.new_tokens = 0


class FakeExLlamaV2DynamicGenerator:
    """generator/dynamic.py ExLlamaV2DynamicGenerator: the constructor's batch-size
    check and padded vocabulary; ``iterate()`` runs one step of every job, each emitting
    ``free_token`` unless its filters decide, the result shapes of dynamic.py emit()."""

    def __init__(self, *, config, max_batch_size, max_q_size=8, free_token=5, **_):
        model_max_q = config.max_batch_size * config.max_input_len
        req_max_q = max_q_size * max_batch_size
        assert req_max_q <= model_max_q, (
            f"Model has max_batch_size * max_input_len = {config.max_batch_size} * "
            f"{config.max_input_len} tokens, generator requires max_batch_size * "
            f"max_q_size = {max_batch_size} * {max_q_size} tokens."
        )
        self.max_batch_size = max_batch_size
        self.padded_vocab_size = ((config.vocab_size + 31) // 32) * 32
        self.free_token = free_token
        self.jobs: list[FakeExLlamaV2DynamicJob] = []

    def enqueue(self, job) -> None:
        self.jobs.append(job)

    def cancel(self, job) -> None:
        self.jobs.remove(job)

    def iterate(self) -> list[dict]:
        results = []
        for job in list(self.jobs):
            token, end_filter = fake_filtered_token(job.filters)
            token = self.free_token if token is None else token
            for f in job.filters:
                f.feed(torch.tensor([[token]]))
            job.new_tokens += 1
            result = {
                "job": job,
                "stage": "streaming",
                "identifier": job.identifier,
                "eos": False,
                "token_ids": torch.tensor([[token]]),
            }
            stop = token in job.settings.get("stop_conditions", ())
            if end_filter or stop or job.new_tokens >= job.max_new_tokens:
                reason = "end_filter" if end_filter else "stop_token" if stop else None
                result.update(eos=True, eos_reason=reason or "max_new_tokens")
                self.jobs.remove(job)
            results.append(result)
        return results


FakeExLlamaV2GeneratorModule = SimpleNamespace(
    ExLlamaV2Sampler=SimpleNamespace(Settings=FakeExLlamaV2SamplerSettings),
    ExLlamaV2DynamicJob=FakeExLlamaV2DynamicJob,
)
