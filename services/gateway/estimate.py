"""How much memory a model will take where it is loaded, before anyone has loaded it.

The order of trust: the profile's ``memory_estimate`` (the operator knows best), then
what a real load of the same model on the same kind of device took (learned), then
a computed figure: weights as they will sit in memory + an fp16-sized KV cache for the
context the neuron will allocate + the backend's runtime overhead. Conservative on
purpose: an estimate that is too small costs a failed load; one too large costs an
extra eviction.
"""

from __future__ import annotations

from cortex.common.config import ModelProfile
from cortex.common.neuron import DeviceKind, ModelFile

MiB = 1024**2
GiB = 1024**3

# The neuron caps a load's context to its `default_max_seq_len` when the load names
# none; the gateway cannot see that setting, so it assumes the shipped default.
DEFAULT_CONTEXT = 4096

# A worker process with its runtime imported, before any weights (measured: a CPU
# torch worker holds ~300 MiB RSS; a CUDA context + exllamav2 scratch ~0.5 GiB).
RUNTIME_OVERHEAD = {
    ("transformers", "cpu"): 384 * MiB,
    ("transformers", "cuda"): 768 * MiB,
    ("exllamav2", "cuda"): 640 * MiB,
}

_DTYPE_BYTES = {
    "float32": 4,
    "float16": 2,
    "bfloat16": 2,
    "float8_e4m3fn": 1,
    "int8": 1,
}

_CACHE_BITS = {"fp16": 16, "q8": 8, "q6": 6, "q4": 4}


def backend_for(file: ModelFile, profile: ModelProfile | None) -> str:
    """The backend a neuron picks for the model (its `auto` rule), unless the profile names one."""
    if profile is not None and profile.backend is not None:
        return profile.backend
    if file.format == "exl2":
        return "exllamav2"
    return "transformers"


def context_for(file: ModelFile, profile: ModelProfile | None) -> int:
    if profile is not None and profile.max_seq_len:
        return profile.max_seq_len
    return min(file.max_seq_len or DEFAULT_CONTEXT, DEFAULT_CONTEXT)


def computed_estimate(
    file: ModelFile, profile: ModelProfile | None, device_kind: DeviceKind
) -> int:
    backend = backend_for(file, profile)
    weights = file.size_bytes
    # The transformers backend loads float32 on CPU (bf16 matmuls are slow there).
    on_disk = _DTYPE_BYTES.get(file.dtype or "", 2)
    if backend == "transformers" and device_kind == "cpu" and on_disk < 4:
        weights = weights * 4 // on_disk
    kv_per_token = file.kv_bytes_per_token or 0
    if backend == "transformers" and device_kind == "cpu":
        kv_per_token *= 2  # float32 cache
    cache_type = profile.cache_type if profile is not None else None
    if backend == "exllamav2" and cache_type:
        kv_per_token = kv_per_token * _CACHE_BITS[cache_type] // 16
    kv = kv_per_token * context_for(file, profile)
    overhead = RUNTIME_OVERHEAD.get((backend, device_kind), 512 * MiB)
    return int(weights * 1.1) + kv + overhead


def estimate(
    file: ModelFile,
    profile: ModelProfile | None,
    device_kind: DeviceKind,
    learned: int | None = None,
) -> int:
    """Bytes to reserve for loading ``file`` on a device of ``device_kind``."""
    if profile is not None and profile.memory_estimate_bytes is not None:
        return profile.memory_estimate_bytes
    if learned:
        return learned
    return computed_estimate(file, profile, device_kind)


def human(n: int | float) -> str:
    """A size for messages: ``1.5 GiB``, ``300 MiB``."""
    if abs(n) >= GiB:
        return f"{n / GiB:.1f} GiB"
    if abs(n) >= MiB:
        return f"{n / MiB:.0f} MiB"
    return f"{n / 1024:.0f} KiB"
