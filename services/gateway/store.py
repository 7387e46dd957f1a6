"""The gateway's small persistent state: API pins, API replica ranges, learned model memory.

One JSON file, rewritten atomically (temp file in the same folder, fsync, rename) so a
crash mid-write leaves the previous version. A missing file is an empty state; a
corrupt one is set aside (``.corrupt``) with a warning instead of stopping the gateway.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from pathlib import Path

import msgspec

log = logging.getLogger("cortex.gateway.store")


class ReplicaSetting(msgspec.Struct):
    min: int
    max: int


class GatewayState(msgspec.Struct, omit_defaults=True):
    pins: list[str] = []
    # model -> the replica range set through the fleet API (over models.toml's)
    replicas: dict[str, ReplicaSetting] = {}
    # "model@device-kind" -> bytes a real load took there
    learned_memory: dict[str, int] = {}


class StateStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.state = self._read()

    def _read(self) -> GatewayState:
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return GatewayState()
        except OSError as exc:
            log.warning("cannot read state file %s: %s; starting with no API pins", self.path, exc)
            return GatewayState()
        try:
            return msgspec.json.decode(data, type=GatewayState)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            aside = self.path.with_suffix(self.path.suffix + ".corrupt")
            with contextlib.suppress(OSError):
                self.path.replace(aside)
            log.warning("state file %s is not valid (%s); moved it to %s", self.path, exc, aside)
            return GatewayState()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = msgspec.json.format(msgspec.json.encode(self.state))
        fd, tmp = tempfile.mkstemp(prefix=".gateway-state-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    @property
    def pins(self) -> set[str]:
        return set(self.state.pins)

    def set_pin(self, model: str, pinned: bool) -> bool:
        """Change a pin and persist it; False when it was already so."""
        pins = self.pins
        if (model in pins) == pinned:
            return False
        pins.add(model) if pinned else pins.discard(model)
        self.state.pins = sorted(pins)
        self.save()
        return True

    def set_replicas(self, model: str, low: int, high: int) -> bool:
        """Set a model's replica range and persist it; False when it was already so."""
        setting = ReplicaSetting(low, high)
        if self.state.replicas.get(model) == setting:
            return False
        self.state.replicas[model] = setting
        self.save()
        return True

    def learned(self, model: str, device_kind: str) -> int | None:
        return self.state.learned_memory.get(f"{model}@{device_kind}")

    def learn(self, model: str, device_kind: str, memory: int) -> None:
        key = f"{model}@{device_kind}"
        if memory <= 0 or self.state.learned_memory.get(key) == memory:
            return
        self.state.learned_memory[key] = memory
        try:
            self.save()
        except OSError as exc:
            log.warning("cannot write state file %s: %s", self.path, exc)
