"""The models directory: which models are on disk, and what the gateway needs to know of each.

Reads only JSON and safetensors headers (never weights), so a scan of a directory of
large models takes milliseconds and the supervisor stays free of torch.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cortex.common.neuron import ModelFile

log = logging.getLogger("cortex.neuron.catalog")

_DTYPE_BYTES = {"F64": 8, "F32": 4, "BF16": 2, "F16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1}
_DTYPE_NAMES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16"}
_EXL2_MARKERS = (".q_weight", ".q_scale", ".q_groups")


class ModelInspectionError(Exception):
    """A folder is not a loadable model; the message says what is missing."""


@dataclass
class SafetensorsSummary:
    parameters: int
    dtype: str | None
    exl2: bool


def read_safetensors_header(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            (length,) = struct.unpack("<Q", f.read(8))
            if length > 100_000_000:
                raise ModelInspectionError(f"{path}: safetensors header is implausibly large")
            header = json.loads(f.read(length))
    except (struct.error, ValueError) as exc:
        raise ModelInspectionError(f"{path} is not a valid safetensors file ({exc})") from None
    if not isinstance(header, dict):
        raise ModelInspectionError(f"{path} is not a valid safetensors file")
    return header


def summarise_weights(files: list[Path]) -> SafetensorsSummary:
    parameters = 0
    dtypes: dict[str, int] = {}
    exl2 = False
    for file in files:
        for name, info in read_safetensors_header(file).items():
            if name == "__metadata__":
                continue
            if name.endswith(_EXL2_MARKERS):
                exl2 = True
            count = 1
            for dim in info.get("shape", []):
                count *= dim
            dtype = info.get("dtype", "")
            parameters += count
            dtypes[dtype] = dtypes.get(dtype, 0) + count
    main = max(dtypes, key=dtypes.__getitem__) if dtypes else None
    return SafetensorsSummary(parameters, _DTYPE_NAMES.get(main or "", main), exl2)


def read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ModelInspectionError(f"{path}: cannot read JSON ({exc})") from None


def model_max_seq_len(config: dict[str, Any]) -> int | None:
    for key in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        value = config.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return None


def kv_bytes_per_token(config: dict[str, Any]) -> int | None:
    """fp16 K+V for one token over all layers: 2 * layers * kv_heads * head_dim * 2 bytes."""
    text = config.get("text_config") or config
    layers = text.get("num_hidden_layers")
    heads = text.get("num_attention_heads")
    kv_heads = text.get("num_key_value_heads") or heads
    head_dim = text.get("head_dim")
    if not head_dim and text.get("hidden_size") and heads:
        head_dim = text["hidden_size"] // heads
    if not (layers and kv_heads and head_dim):
        return None
    return 2 * layers * kv_heads * head_dim * 2


def eos_token_ids(path: str | Path) -> list[int]:
    """Every EOS id of a model: generation_config.json first, then config.json."""
    ids: list[int] = []
    for name in ("generation_config.json", "config.json"):
        value = read_json(Path(path) / name).get("eos_token_id")
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, int) and item not in ids:
                ids.append(item)
    return ids


def is_exl2(config: dict[str, Any], summary: SafetensorsSummary) -> bool:
    quant = config.get("quantization_config") or {}
    return summary.exl2 or str(quant.get("quant_method", "")).lower() == "exl2"


def inspect_model(path: Path, model_id: str, backends_for) -> ModelFile:
    """Describe one model folder. ``backends_for(format)`` names the backends that can load it."""
    if not path.is_dir():
        raise ModelInspectionError(f"{path} is not a folder")
    config_file = path / "config.json"
    if not config_file.is_file():
        raise ModelInspectionError(f"{path} has no config.json (not a Hugging Face model folder)")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        raise ModelInspectionError(f"{path} has no *.safetensors weights")
    if not (path / "tokenizer.json").is_file():
        raise ModelInspectionError(f"{path} has no tokenizer.json")
    config = read_json(config_file)
    summary = summarise_weights(weights)
    exl2 = is_exl2(config, summary)
    fmt: Literal["safetensors", "exl2"] = "exl2" if exl2 else "safetensors"
    quant = config.get("quantization_config") or {}
    bits = quant.get("bits") if exl2 else None
    architectures = config.get("architectures") or []
    size = sum(f.stat().st_size for f in path.iterdir() if f.is_file())
    return ModelFile(
        id=model_id,
        path=str(path),
        format=fmt,
        size_bytes=size,
        backends=backends_for(fmt),
        architecture=architectures[0] if architectures else config.get("model_type"),
        parameters=summary.parameters or None,
        max_seq_len=model_max_seq_len(config),
        kv_bytes_per_token=kv_bytes_per_token(config),
        bits_per_weight=float(bits) if isinstance(bits, int | float) else None,
        dtype=None if exl2 else summary.dtype,
    )


class ModelCatalog:
    """The models found under one directory, keyed by id (the folder's name)."""

    def __init__(self, root: Path, backends_for) -> None:
        self.root = root
        self._backends_for = backends_for
        self.models: dict[str, ModelFile] = {}
        self._signature: tuple = ()

    def _current_signature(self) -> tuple:
        if not self.root.is_dir():
            return ()
        entries = []
        for entry in sorted(os.scandir(self.root), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_dir():
                continue
            try:
                stamp = max((f.stat().st_mtime_ns for f in Path(entry.path).iterdir()), default=0)
            except OSError:
                continue
            entries.append((entry.name, stamp))
        return tuple(entries)

    def scan(self) -> bool:
        """Rescan; True when the set of models (or any of their files) changed."""
        signature = self._current_signature()
        if signature == self._signature:
            return False
        found: dict[str, ModelFile] = {}
        for name, _ in signature:
            try:
                found[name] = inspect_model(self.root / name, name, self._backends_for)
            except (ModelInspectionError, OSError) as exc:
                log.debug("skipping %s: %s", name, exc)
        changed = found != self.models
        self.models = found
        self._signature = signature
        return changed

    def get(self, model_id: str) -> ModelFile | None:
        return self.models.get(model_id)

    def resolve(self, model: str) -> tuple[str, Path]:
        """An id from the directory, or a path on this host, as (id, folder)."""
        if model in self.models:
            return model, Path(self.models[model].path)
        candidate = Path(model).expanduser()
        if candidate.is_absolute() or os.sep in model:
            if not candidate.is_dir():
                raise ModelInspectionError(f"model path {model} does not exist on this neuron")
            return candidate.resolve().name, candidate.resolve()
        self.scan()
        if model in self.models:
            return model, Path(self.models[model].path)
        known = ", ".join(sorted(self.models)) or "none"
        raise ModelInspectionError(
            f"model {model!r} is not in the models directory {self.root} (available: {known})"
        )

    def listing(self) -> list[ModelFile]:
        return [self.models[k] for k in sorted(self.models)]
