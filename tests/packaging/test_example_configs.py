"""packaging/config: the example files load with the real loader and document every key."""

from __future__ import annotations

import re
import typing
from pathlib import Path

import msgspec
import pytest

from cortex.common.config import (
    GatewayConfig,
    ModelsConfig,
    NeuronConfig,
    load_config,
)
from cortex.services.gateway.settings import Settings

CONFIG_DIR = Path(__file__).resolve().parents[2] / "packaging" / "config"


def documented_keys(struct: type[msgspec.Struct]) -> set[str]:
    """Every key path a user can write for ``struct`` (tables flattened to their keys)."""
    keys = set()
    hints = typing.get_type_hints(struct)
    for name in struct.__struct_fields__:
        keys.add(name)
        inner = hints[name]
        for candidate in (inner, *typing.get_args(inner)):
            if isinstance(candidate, type) and issubclass(candidate, msgspec.Struct):
                keys |= documented_keys(candidate)
    return keys


def keys_in_file(path: Path) -> set[str]:
    text = path.read_text()
    assigned = set(re.findall(r"^#?\s*\"?([A-Za-z_][A-Za-z0-9_]*)\"?\s*=", text, re.MULTILINE))
    tables = set(re.findall(r"^\[+\s*([A-Za-z_]+)\s*\]+", text, re.MULTILINE))
    return assigned | tables


@pytest.mark.parametrize(
    ("name", "struct"),
    [("cortex.toml", GatewayConfig), ("models.toml", ModelsConfig), ("neuron.toml", NeuronConfig)],
)
def test_example_loads_and_covers_every_option(name, struct):
    path = CONFIG_DIR / name
    load_config(path, struct)
    missing = documented_keys(struct) - keys_in_file(path)
    assert not missing, f"{name} does not show {sorted(missing)}"


def test_gateway_example_reads_its_models_file_beside_it():
    settings = Settings.load(CONFIG_DIR / "cortex.toml")
    assert [n.name for n in settings.config.neurons] == ["gpu-a", "gpu-b"]
    assert [m.id for m in settings.models.models] == ["qwen2.5-coder-7b", "demo-small"]
    assert settings.profiles["qwen2.5-coder-7b"].pin is True
