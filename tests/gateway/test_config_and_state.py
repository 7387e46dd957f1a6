"""Gateway settings, aliases, memory estimates and the state file: no HTTP."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cortex.common.config import ConfigError, ModelProfile
from cortex.common.neuron import ModelFile
from cortex.services.gateway.estimate import DEFAULT_CONTEXT, MiB, computed_estimate, estimate
from cortex.services.gateway.settings import Settings
from cortex.services.gateway.store import StateStore


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


def test_models_file_is_read_relative_to_cortex_toml(tmp_path):
    write(tmp_path / "models.toml", '[[models]]\nid = "coder"\npath = "demo-small"\npin = true\n')
    config = write(
        tmp_path / "cortex.toml",
        '[gateway]\nmodels_file = "models.toml"\nstate_file = "s/state.json"\n',
    )
    settings = Settings.load(config)
    assert settings.profiles["coder"].neuron_path == "demo-small"
    assert settings.state_path == tmp_path / "s" / "state.json"


def test_missing_models_file_names_the_key_and_the_path(tmp_path):
    config = write(tmp_path / "cortex.toml", '[gateway]\nmodels_file = "nope.toml"\n')
    with pytest.raises(ConfigError) as caught:
        Settings.load(config)
    assert "gateway.models_file" in str(caught.value) and "nope.toml" in str(caught.value)


def test_aliases_exact_then_glob_and_never_over_a_real_model(tmp_path):
    config = write(
        tmp_path / "cortex.toml",
        '[aliases]\n"gpt-4o" = "demo-small"\n"claude-*" = "demo-tiny"\n"*" = "demo-tiny"\n',
    )
    settings = Settings.load(config)
    known = {"demo-small", "demo-tiny", "other"}.__contains__
    assert settings.resolve_alias("gpt-4o", known) == "demo-small"
    assert settings.resolve_alias("claude-sonnet-4-5", known) == "demo-tiny"
    assert settings.resolve_alias("other", known) == "other"
    assert settings.resolve_alias("anything", known) == "demo-tiny"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[gateway]\nlisten = 5\n", "gateway.listen"),
        ('[eviction]\nstrategy = "fifo"\n', "eviction.strategy"),
        ('[gateway]\nlisen = "x"\n', "did you mean `listen`"),
    ],
)
def test_bad_config_exits_2_with_a_message_naming_the_key(tmp_path, text, expected):
    config = write(tmp_path / "cortex.toml", text)
    result = subprocess.run(
        [sys.executable, "-m", "cortex.services.gateway.cli", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert expected in result.stderr and str(config) in result.stderr


def test_bad_listen_flag_exits_2(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "cortex.services.gateway.cli", "--listen", "nowhere"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "host:port" in result.stderr


# --------------------------------------------------------------------------- estimates

FILE = ModelFile(
    id="m",
    path="/models/m",
    format="safetensors",
    size_bytes=1000 * MiB,
    max_seq_len=32768,
    kv_bytes_per_token=64 * 1024,
    dtype="bfloat16",
)


def test_profile_estimate_wins_then_learned_then_computed():
    profile = ModelProfile(id="m", memory_estimate="3GiB")
    assert estimate(FILE, profile, "cuda", learned=5) == 3 * 1024**3
    assert estimate(FILE, None, "cuda", learned=123) == 123
    assert estimate(FILE, None, "cuda") == computed_estimate(FILE, None, "cuda")


def test_computed_estimate_counts_float32_on_cpu_and_the_capped_context():
    gpu = computed_estimate(FILE, None, "cuda")
    cpu = computed_estimate(FILE, None, "cpu")
    kv = 64 * 1024 * DEFAULT_CONTEXT
    assert gpu == int(1000 * MiB * 1.1) + kv + 768 * MiB
    assert cpu == int(2000 * MiB * 1.1) + 2 * kv + 384 * MiB
    longer = computed_estimate(FILE, ModelProfile(id="m", max_seq_len=8192), "cuda")
    assert longer - gpu == 64 * 1024 * (8192 - DEFAULT_CONTEXT)


def test_quantised_cache_shrinks_the_exllamav2_kv_estimate():
    exl2 = ModelFile(id="q", path="/q", format="exl2", size_bytes=0, kv_bytes_per_token=1024)
    fp16 = computed_estimate(exl2, ModelProfile(id="q", max_seq_len=1024), "cuda")
    q4 = computed_estimate(exl2, ModelProfile(id="q", max_seq_len=1024, cache_type="q4"), "cuda")
    assert fp16 - q4 == 1024 * 1024 * 3 // 4


# --------------------------------------------------------------------------- state file


def test_pins_and_learned_memory_survive_a_new_store(tmp_path):
    path = tmp_path / "state" / "gateway-state.json"
    store = StateStore(path)
    assert store.set_pin("demo-tiny", True)
    assert not store.set_pin("demo-tiny", True)
    store.learn("demo-tiny", "cpu", 400 * MiB)
    again = StateStore(path)
    assert again.pins == {"demo-tiny"}
    assert again.learned("demo-tiny", "cpu") == 400 * MiB
    assert [p.name for p in path.parent.iterdir()] == ["gateway-state.json"]  # no temp left


def test_a_corrupt_state_file_is_set_aside_not_fatal(tmp_path):
    path = write(tmp_path / "gateway-state.json", "{not json")
    store = StateStore(path)
    assert store.pins == set()
    assert (tmp_path / "gateway-state.json.corrupt").read_text() == "{not json"
    store.set_pin("x", True)
    assert json.loads(path.read_text())["pins"] == ["x"]
