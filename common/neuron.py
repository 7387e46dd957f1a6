"""The neuron's control API: devices, models on disk and loaded, load/unload, events.

These are the contract between a neuron and the gateway (and anything else that
drives a neuron directly). Memory figures are bytes; rates are per second; times are
Unix seconds unless a field name says otherwise.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

DeviceKind = Literal["cuda", "cpu"]
ModelState = Literal["loading", "loaded", "unloading", "failed"]
LoadStage = Literal["queued", "starting", "loading", "warming", "loaded", "failed"]
CacheType = Literal["fp16", "q8", "q6", "q4"]
BackendName = Literal["transformers", "exllamav2"]
Batching = Literal["continuous", "round_robin"]


class ProcessMemory(msgspec.Struct):
    """Memory a model worker holds on one device (NVML per-process, or RSS on the CPU)."""

    model: str
    pid: int
    bytes: int


class Device(msgspec.Struct, omit_defaults=True):
    id: str  # "cuda:0", "cuda:1", ... or "cpu"
    kind: DeviceKind
    name: str
    memory_total: int
    memory_used: int
    memory_free: int
    index: int = 0
    uuid: str | None = None
    utilization: float | None = None  # percent
    temperature_c: float | None = None
    power_w: float | None = None
    power_limit_w: float | None = None
    budget: int | None = None  # bytes cortex may use on this device (neuron.toml)
    processes: list[ProcessMemory] = []


class ModelFile(msgspec.Struct, omit_defaults=True):
    """A model found in the neuron's models directory."""

    id: str
    path: str
    format: Literal["safetensors", "exl2"]
    size_bytes: int
    backends: list[str] = []  # backends on this neuron that can load it
    architecture: str | None = None
    parameters: int | None = None
    max_seq_len: int | None = None  # the model's own context length (config.json)
    kv_bytes_per_token: int | None = None  # fp16 K+V for one token, all layers
    bits_per_weight: float | None = None  # EXL2 only
    dtype: str | None = None


class LoadProgress(msgspec.Struct, omit_defaults=True):
    stage: LoadStage
    done: int = 0  # modules loaded
    total: int = 0  # modules to load
    message: str | None = None

    @property
    def fraction(self) -> float:
        if self.stage == "loaded":
            return 1.0
        return self.done / self.total if self.total else 0.0


class LoadedModel(msgspec.Struct, omit_defaults=True):
    """A model a neuron has loaded, is loading, or failed to load, with live figures."""

    id: str
    state: ModelState
    backend: str
    devices: list[str]
    path: str | None = None
    pid: int | None = None
    memory_bytes: int = 0
    memory_by_device: dict[str, int] = {}
    max_seq_len: int = 0
    cache_type: str | None = None
    max_concurrency: int = 1
    in_flight: int = 0
    queued: int = 0
    tokens_per_s: float = 0.0  # rolling decode rate over the last few seconds
    ttft_ms: float | None = None  # of the last request
    requests_total: int = 0
    errors_total: int = 0
    prompt_tokens_total: int = 0
    completion_tokens_total: int = 0
    loaded_at: float | None = None
    last_used_at: float | None = None
    load_seconds: float | None = None
    progress: LoadProgress | None = None
    error: str | None = None
    batching: str | None = None  # "continuous" | "round_robin" (transformers)
    forwards_total: int = 0  # the engine's model forward passes (batching: < tokens)
    prefix_cache: PrefixCacheStatus | None = None


class PrefixCacheStatus(msgspec.Struct):
    """A model's prefix cache: KV state of ended sequences that new prompts reuse."""

    budget_bytes: int
    size_bytes: int = 0
    entries: int = 0
    lookups: int = 0  # requests that looked for a prefix
    hits: int = 0  # of those, how many reused one
    cached_tokens: int = 0  # prompt tokens reused instead of computed, over all hits


class LoadRequest(msgspec.Struct, forbid_unknown_fields=True, omit_defaults=True):
    model: str  # an id from the models directory, or a path on the neuron
    backend: BackendName | None = None
    devices: list[str] | None = None
    max_seq_len: int | None = None
    cache_type: CacheType | None = None
    max_concurrency: int | None = None
    id: str | None = None  # the id to serve it under (default: the directory name)
    batching: Batching | None = None  # default: the neuron's `batching`
    prefix_cache: int | str | None = None  # a size ("2GiB"); 0: off; default: the neuron's


class UnloadRequest(msgspec.Struct, forbid_unknown_fields=True):
    model: str


class NodeStatus(msgspec.Struct, omit_defaults=True):
    name: str
    version: str
    started_at: float
    backends: list[str]
    devices: list[Device]
    available: list[ModelFile]
    loaded: list[LoadedModel]
    models_dir: str | None = None


class TokenizeRequest(msgspec.Struct, omit_defaults=True):
    """Count (and optionally return) the tokens of a text or of chat messages.

    ``messages`` and ``tools`` are OpenAI-shaped and go through the model's chat
    template, exactly as a chat completion would.
    """

    model: str
    text: str | None = None
    messages: list[dict[str, Any]] | None = None
    tools: list[dict[str, Any]] | None = None
    add_generation_prompt: bool = True
    return_ids: bool = False


class TokenizeResponse(msgspec.Struct, omit_defaults=True):
    model: str
    count: int
    max_seq_len: int | None = None
    ids: list[int] | None = None


class RequestStats(msgspec.Struct, omit_defaults=True):
    """One finished request, as reported on the event stream and in metrics."""

    model: str
    request_id: str
    endpoint: str  # "chat" | "completions"
    status: Literal["ok", "error", "cancelled"]
    prompt_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, reused from the engine's prefix cache
    completion_tokens: int = 0
    queue_ms: float = 0.0
    ttft_ms: float | None = None
    prefill_tokens_per_s: float | None = None
    decode_tokens_per_s: float | None = None
    total_ms: float = 0.0
    finish_reason: str | None = None
    error: str | None = None


# --------------------------------------------------------------------------- events
# GET /events on a neuron: SSE whose `event:` is the struct's tag and whose data is
# the struct as JSON. On connect the neuron sends a `status` event.


class StatusEvent(msgspec.Struct, tag="status", tag_field="type"):
    status: NodeStatus


class ModelEvent(msgspec.Struct, tag="model", tag_field="type"):
    """A loaded model changed: state, progress or live figures (at most ~1 Hz each)."""

    model: LoadedModel


class ModelRemovedEvent(msgspec.Struct, tag="model_removed", tag_field="type"):
    id: str
    reason: Literal["unloaded", "crashed", "failed"]
    message: str | None = None


class DevicesEvent(msgspec.Struct, tag="devices", tag_field="type"):
    devices: list[Device]


class RequestEvent(msgspec.Struct, tag="request", tag_field="type"):
    stats: RequestStats


class AvailableEvent(msgspec.Struct, tag="available", tag_field="type"):
    """The models directory changed."""

    available: list[ModelFile]


NeuronEvent = (
    StatusEvent | ModelEvent | ModelRemovedEvent | DevicesEvent | RequestEvent | AvailableEvent
)

NEURON_EVENT_TAGS = ("status", "model", "model_removed", "devices", "request", "available")
