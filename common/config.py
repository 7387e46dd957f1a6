"""Configuration: ``cortex.toml`` (gateway), ``models.toml`` (placement profiles), ``neuron.toml``.

TOML is decoded straight into msgspec Structs. An unknown key, a wrong type or a bad
value fails at start with the file, the key path and what was expected. Every program
also starts with no file at all, on the defaults below (a local single-host fleet).
"""

from __future__ import annotations

import difflib
import os
import re
import socket
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar

import msgspec

from cortex.common.ports import GATEWAY_METRICS_PORT, GATEWAY_PORT, NEURON_PORT

T = TypeVar("T")


class ConfigError(Exception):
    """A configuration file is missing, not TOML, or does not match the schema."""


# --------------------------------------------------------------------------- value types

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


def parse_size(value: int | str) -> int:
    """Bytes from an int or a string such as ``"512MiB"``, ``"8 GiB"``, ``"1.5GB"``."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError("a size cannot be negative")
        return value
    match = _SIZE.match(value)
    if not match:
        raise ValueError(f"{value!r} is not a size: use bytes or a string like '512MiB' or '8GiB'")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "b").lower()])


def parse_budget(value: int | str, total: int) -> int:
    """A memory budget: a size, or a percentage of ``total`` such as ``"90%"``."""
    if isinstance(value, str) and value.strip().endswith("%"):
        percent = float(value.strip()[:-1])
        if not 0 < percent <= 100:
            raise ValueError(f"{value!r}: a percentage must be in (0, 100]")
        return int(total * percent / 100)
    return parse_size(value)


def _check_budget(value: int | str) -> None:
    if isinstance(value, str) and value.strip().endswith("%"):
        parse_budget(value, 100)
    else:
        parse_size(value)


def _check(key: str, check: Any, value: Any) -> None:
    """Run ``check(value)``; re-raise its ValueError naming ``key``."""
    try:
        check(value)
    except ValueError as exc:
        raise ValueError(f"`{key}`: {exc}") from None


def _require(key: str, ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(f"`{key}`: {message}")


def parse_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (IPv6 as ``"[::1]:port"``) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536 or not host:
        raise ValueError(f"{value!r} is not host:port, e.g. '127.0.0.1:{NEURON_PORT}'")
    return host.strip("[]"), int(port)


def _check_url(value: str) -> None:
    if not re.match(r"^https?://[^/\s]+", value):
        raise ValueError(f"{value!r} is not an http(s) URL, e.g. 'http://10.0.0.5:{NEURON_PORT}'")


def user_dir(kind: Literal["data", "state"]) -> Path:
    """``$XDG_DATA_HOME/cortex`` or ``$XDG_STATE_HOME/cortex`` with the XDG fallbacks."""
    variable, fallback = {
        "data": ("XDG_DATA_HOME", ".local/share"),
        "state": ("XDG_STATE_HOME", ".local/state"),
    }[kind]
    base = os.environ.get(variable) or str(Path.home() / fallback)
    return Path(base) / "cortex"


# --------------------------------------------------------------------------- cortex.toml


class GatewaySection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    listen: str = f"127.0.0.1:{GATEWAY_PORT}"
    metrics_listen: str = f"127.0.0.1:{GATEWAY_METRICS_PORT}"
    # models.toml, relative to cortex.toml's folder; "" means none.
    models_file: str = ""
    # Pins set through the API survive restarts here; "" means the user state dir.
    state_file: str = ""
    max_body_bytes: int | str = "16MiB"
    # How long a request may wait for a cold load before it is answered 503.
    load_timeout_s: float = 600.0
    # Seconds between `: ping` comments sent to streams that wait (cold load, queue).
    keepalive_interval_s: float = 5.0
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 600.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Stored responses (POST /v1/responses): an SQLite file, relative to cortex.toml's
    # folder; "" means responses.sqlite3 beside the state file. Rows older than
    # responses_max_age_days, and the oldest beyond responses_max_count, are dropped.
    responses_db: str = ""
    responses_max_age_days: float = 30.0
    responses_max_count: int = 10000
    # Route a conversation to the placement that served its prefix (false: least in flight).
    affinity: bool = True
    # Lower a max_tokens that does not fit the model's context to what fits, instead of
    # answering 400 (a profile's clamp_max_tokens overrides this per model).
    clamp_max_tokens: bool = False

    def __post_init__(self) -> None:
        _check("listen", parse_listen, self.listen)
        _check("metrics_listen", parse_listen, self.metrics_listen)
        _require("responses_max_age_days", self.responses_max_age_days > 0, "must be > 0")
        _require("responses_max_count", self.responses_max_count >= 1, "must be >= 1")
        _check("max_body_bytes", parse_size, self.max_body_bytes)
        for name in ("load_timeout_s", "keepalive_interval_s", "connect_timeout_s"):
            _require(name, getattr(self, name) > 0, "must be > 0")

    @property
    def max_body(self) -> int:
        return parse_size(self.max_body_bytes)


class NeuronEndpoint(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str
    endpoint: str
    token: str = ""  # the token this neuron expects; default: auth.neuron_token

    def __post_init__(self) -> None:
        _require(
            "name",
            bool(re.match(r"^[A-Za-z0-9_.-]+$", self.name)),
            f"{self.name!r} may only use letters, digits and '_.-'",
        )
        _check("endpoint", _check_url, self.endpoint)
        self.endpoint = self.endpoint.rstrip("/")


class EvictionSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    strategy: Literal["lru", "priority"] = "lru"
    # Unload a model this long after its last request ended; 0 keeps it loaded.
    idle_ttl_s: float = 0.0
    sweep_interval_s: float = 10.0

    def __post_init__(self) -> None:
        _require("idle_ttl_s", self.idle_ttl_s >= 0, "must be >= 0 (0 disables idle unloading)")
        _require("sweep_interval_s", self.sweep_interval_s > 0, "must be > 0")


class HealthSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    interval_s: float = 2.0
    missed_beats: int = 3
    timeout_s: float = 2.0

    def __post_init__(self) -> None:
        _require("interval_s", self.interval_s > 0, "must be > 0")
        _require("timeout_s", self.timeout_s > 0, "must be > 0")
        _require("missed_beats", self.missed_beats >= 1, "must be >= 1")


class ReplicaRange(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, omit_defaults=True):
    """How many placements of a model the scheduler keeps: ``{ min = 1, max = 2 }``.

    In models.toml either bound may be left out (then the gateway-wide ``[replicas]`` one
    holds).
    """

    min: int | None = None  # kept loaded: loaded at start and after a neuron comes back
    max: int | None = None  # at most this many, scaled up on queue pressure

    def __post_init__(self) -> None:
        _require("min", (self.min or 0) >= 0, "must be >= 0")
        _require("max", self.max is None or self.max >= 1, "must be >= 1")
        if self.min is not None and self.max is not None:
            _require("min", self.min <= self.max, f"must be <= max ({self.max})")


class ReplicasSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Replica scaling: the defaults of every model's range, and when to scale."""

    min: int = 0  # 0 and 1 keep today's behaviour: one placement, loaded on demand
    max: int = 1
    # Scale up when more requests than this wait for the model (beyond what its
    # placements run at once) ...
    queue_depth: int = 4
    # ... or a request waited longer than this in a neuron's queue ...
    queue_wait_s: float = 5.0
    # ... for this long without a break.
    window_s: float = 10.0
    # Scale down to min once an extra replica has served nothing for this long.
    idle_s: float = 300.0
    interval_s: float = 1.0  # how often the scheduler looks

    def __post_init__(self) -> None:
        _require("min", self.min >= 0, "must be >= 0")
        _require("max", self.max >= 1, "must be >= 1")
        _require("min", self.min <= self.max, f"must be <= max ({self.max})")
        _require("queue_depth", self.queue_depth >= 1, "must be >= 1")
        for name in ("queue_wait_s", "window_s", "idle_s", "interval_s"):
            _require(name, getattr(self, name) > 0, "must be > 0")


class AuthSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    api_keys: list[str] = []  # client keys for /v1/*; empty: no key needed
    admin_token: str = ""  # for /fleet/* actions; empty: no token needed
    neuron_token: str = ""  # sent to neurons as a Bearer token


class GatewayConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    gateway: GatewaySection = msgspec.field(default_factory=GatewaySection)
    neurons: list[NeuronEndpoint] = msgspec.field(
        default_factory=lambda: [
            NeuronEndpoint(name="local", endpoint=f"http://127.0.0.1:{NEURON_PORT}")
        ]
    )
    eviction: EvictionSection = msgspec.field(default_factory=EvictionSection)
    health: HealthSection = msgspec.field(default_factory=HealthSection)
    auth: AuthSection = msgspec.field(default_factory=AuthSection)
    replicas: ReplicasSection = msgspec.field(default_factory=ReplicasSection)
    # Model-name aliases: glob pattern -> model id, e.g. "claude-*" = "qwen2.5-coder".
    aliases: dict[str, str] = {}

    def __post_init__(self) -> None:
        names = [n.name for n in self.neurons]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        _require("neurons", not duplicates, f"names must be unique; repeated: {duplicates}")


# --------------------------------------------------------------------------- models.toml


class ModelProfile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: str
    # On the neuron: relative to its models_dir, or absolute. Default: the id.
    path: str = ""
    backend: Literal["transformers", "exllamav2"] | None = None
    neurons: list[str] = []  # affinity: only these neurons; empty: any that has it
    devices: list[str] = []
    pin: bool = False
    priority: int = 0  # higher survives longer under the "priority" strategy
    max_seq_len: int | None = None
    cache_type: Literal["fp16", "q8", "q6", "q4"] | None = None
    max_concurrency: int | None = None
    memory_estimate: int | str | None = None  # override of the computed estimate
    replicas: ReplicaRange | None = None  # default: the gateway's [replicas] min and max
    clamp_max_tokens: bool | None = None  # None: gateway.clamp_max_tokens

    def __post_init__(self) -> None:
        _require("id", bool(self.id.strip()), "must not be empty")
        if self.memory_estimate is not None:
            _check("memory_estimate", parse_size, self.memory_estimate)
        _require("max_seq_len", (self.max_seq_len or 16) >= 16, "must be >= 16")
        _require("max_concurrency", (self.max_concurrency or 1) >= 1, "must be >= 1")

    @property
    def memory_estimate_bytes(self) -> int | None:
        return None if self.memory_estimate is None else parse_size(self.memory_estimate)

    @property
    def neuron_path(self) -> str:
        return self.path or self.id


class ModelsConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    models: list[ModelProfile] = []

    def __post_init__(self) -> None:
        ids = [m.id for m in self.models]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        _require("models", not duplicates, f"ids must be unique; repeated: {duplicates}")


# --------------------------------------------------------------------------- neuron.toml


class NeuronSection(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    name: str = ""  # default: the host name
    listen: str = f"127.0.0.1:{NEURON_PORT}"
    models_dir: str = ""  # default: ./models if it exists, else the user data dir
    backend_default: Literal["auto", "transformers", "exllamav2"] = "auto"
    devices: list[str] = []  # default: every device found
    # Memory cortex may use per device: a size ("20GiB"), a share ("90%"), or a
    # table by device id ({ cpu = "4GiB", "cuda:0" = "70GiB" }).
    memory_budget: int | str | dict[str, int | str] = "90%"
    token: str = ""  # Bearer token for every endpoint but /health; empty: open
    max_queue: int = 64  # per model, beyond its concurrency; then 429
    max_concurrency: int = 4  # sequences per model at once (engines may allow fewer)
    default_max_seq_len: int = 4096  # cap on context when a load names none
    default_cache_type: Literal["fp16", "q8", "q6", "q4"] = "fp16"
    cpu_threads: int = 0  # torch threads per CPU worker; 0: torch's default
    # transformers: decode every running sequence in one forward, or one forward each.
    batching: Literal["continuous", "round_robin"] = "continuous"
    # transformers: KV state of ended sequences kept per model for prefix reuse; 0: off.
    prefix_cache: int | str = "1GiB"
    prewarm_worker: bool = True  # keep one worker process imported and ready
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # The largest request body accepted; the same default as gateway.max_body_bytes, so
    # whatever the gateway accepts the neuron does too (keep it >= the gateway's).
    max_body_bytes: int | str = "16MiB"

    def __post_init__(self) -> None:
        _check("listen", parse_listen, self.listen)
        _check("max_body_bytes", parse_size, self.max_body_bytes)
        budgets = self.memory_budget
        for value in budgets.values() if isinstance(budgets, dict) else [budgets]:
            _check("memory_budget", _check_budget, value)
        _require("max_queue", self.max_queue >= 0, "must be >= 0")
        _require("max_concurrency", self.max_concurrency >= 1, "must be >= 1")
        _require("default_max_seq_len", self.default_max_seq_len >= 16, "must be >= 16")
        _require("cpu_threads", self.cpu_threads >= 0, "must be >= 0 (0: torch's default)")
        _check("prefix_cache", parse_size, self.prefix_cache)

    @property
    def max_body(self) -> int:
        return parse_size(self.max_body_bytes)

    @property
    def node_name(self) -> str:
        return self.name or socket.gethostname()

    def resolved_models_dir(self) -> Path:
        if self.models_dir:
            return Path(self.models_dir).expanduser()
        local = Path("models")
        if local.is_dir():
            return local.resolve()
        return user_dir("data") / "models"

    def budget_for(self, device_id: str, total: int) -> int:
        budgets = self.memory_budget
        if isinstance(budgets, dict):
            value = budgets.get(device_id, budgets.get("default", "90%"))
        else:
            value = budgets
        return min(total, parse_budget(value, total))


class NeuronConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    neuron: NeuronSection = msgspec.field(default_factory=NeuronSection)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path | None, type_: type[T]) -> T:
    """Decode a TOML file into ``type_``; ``None`` gives the defaults.

    Raises :class:`ConfigError` naming the file, the key path and what was expected.
    """
    if path is None:
        return type_()
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc.strerror}") from None
    return decode_config(data, type_, str(path))


def decode_config(data: bytes | str, type_: type[T], source: str) -> T:
    try:
        return msgspec.toml.decode(data, type=type_)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc, type_)}") from None
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None


def _describe(exc: msgspec.ValidationError, root: type) -> str:
    text = str(exc)
    message, sep, where = text.rpartition(" - at `")
    if not sep:
        message, where = text, "$"
    where = where.rstrip("`")
    key_path = where.removeprefix("$").lstrip(".") or "(top level)"
    unknown = re.match(r"Object contains unknown field `(.+)`", message)
    if unknown:
        name = unknown.group(1)
        full = f"{key_path}.{name}" if where != "$" else name
        allowed = _allowed_keys(root, where)
        hint = ""
        if allowed:
            close = difflib.get_close_matches(name, allowed, n=1)
            hint = f" (did you mean `{close[0]}`?)" if close else ""
            hint += f"; allowed keys: {', '.join(allowed)}"
        return f"unknown key `{full}`{hint}"
    missing = re.match(r"Object missing required field `(.+)`", message)
    if missing:
        location = "" if where == "$" else f" in `{key_path}`"
        return f"missing required key `{missing.group(1)}`{location}"
    keyed = re.match(r"^`([A-Za-z0-9_]+)`: (.*)$", message, re.DOTALL)
    if keyed:
        name, message = keyed.groups()
        key_path = name if where == "$" else f"{key_path}.{name}"
    return f"bad value for `{key_path}`: {message}"


def _allowed_keys(root: type, where: str) -> list[str]:
    """Field names of the Struct found at a msgspec error path like ``$.neurons[0]``."""
    current: Any = root
    for step in re.findall(r"\.([A-Za-z0-9_-]+)|\[\d+\]", where.removeprefix("$")):
        current = _unwrap(current)
        if step:
            if not (isinstance(current, type) and issubclass(current, msgspec.Struct)):
                return []
            hints = typing.get_type_hints(current)
            if step not in hints:
                return []
            current = hints[step]
        else:
            args = typing.get_args(current)
            current = args[0] if args else Any
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, msgspec.Struct):
        return list(current.__struct_fields__)
    return []


def _unwrap(tp: Any) -> Any:
    """The Struct (or list) inside an optional or a union."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        for arg in args:
            if isinstance(arg, type) and issubclass(arg, msgspec.Struct):
                return arg
    return tp
