"""FakeExLlamaV2: stand-ins for the few exllamav2 0.3.2 names the pure helpers touch.

Why a fake: the real package JIT-compiles a CUDA extension at import, which fails on a
host without a GPU (this one). The helpers under test only read or set attributes of
these objects, so the fakes copy exactly that surface from exllamav2 0.3.2 (the
Settings defaults are the real ones, which is the point of the mapping test: every
field must be overwritten).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace


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
