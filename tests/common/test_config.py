"""Config files: defaults without a file, and errors that name the file, key path and fix."""

from __future__ import annotations

import pytest

from cortex.common.config import (
    ConfigError,
    GatewayConfig,
    ModelsConfig,
    NeuronConfig,
    decode_config,
    load_config,
    parse_budget,
    parse_listen,
    parse_size,
)


def error_for(text: str, type_: type, source: str = "cortex.toml") -> str:
    with pytest.raises(ConfigError) as info:
        decode_config(text, type_, source)
    return str(info.value)


def test_every_program_starts_without_a_config_file():
    gateway = load_config(None, GatewayConfig)
    assert gateway.gateway.listen == "127.0.0.1:31313"
    assert gateway.gateway.metrics_listen == "127.0.0.1:31314"
    assert [(n.name, n.endpoint) for n in gateway.neurons] == [("local", "http://127.0.0.1:13131")]
    assert gateway.eviction.strategy == "lru"
    neuron = load_config(None, NeuronConfig)
    assert neuron.neuron.listen == "127.0.0.1:13131"
    assert neuron.neuron.backend_default == "auto"
    assert load_config(None, ModelsConfig).models == []


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match=r"nope\.toml: config file not found"):
        load_config(missing, GatewayConfig)


def test_unknown_key_names_path_and_suggests_the_right_one():
    message = error_for('[gateway]\nlisen = "0.0.0.0:1"\n', GatewayConfig)
    assert message.startswith("cortex.toml: unknown key `gateway.lisen`")
    assert "did you mean `listen`?" in message
    assert "allowed keys: listen, metrics_listen" in message


def test_unknown_key_inside_an_array_of_tables():
    text = '[[neurons]]\nname = "a"\nendpoint = "http://h:1"\ntokn = "x"\n'
    message = error_for(text, GatewayConfig)
    assert "unknown key `neurons[0].tokn`" in message
    assert "did you mean `token`?" in message


def test_unknown_top_level_section():
    message = error_for("[gatewya]\n", GatewayConfig)
    assert "unknown key `gatewya`" in message
    assert "did you mean `gateway`?" in message


def test_wrong_type_names_key_and_expected_type():
    message = error_for('[eviction]\nidle_ttl_s = "soon"\n', GatewayConfig)
    assert (
        message == "cortex.toml: bad value for `eviction.idle_ttl_s`: Expected `float`, got `str`"
    )


def test_bad_enum_value():
    message = error_for('[eviction]\nstrategy = "fifo"\n', GatewayConfig)
    assert "`eviction.strategy`" in message and "'fifo'" in message


def test_missing_required_key():
    message = error_for('[[neurons]]\nname = "a"\n', GatewayConfig)
    assert message == "cortex.toml: missing required key `endpoint` in `neurons[0]`"


@pytest.mark.parametrize(
    ("text", "key", "fragment"),
    [
        ('[gateway]\nlisten = "nohost"\n', "gateway.listen", "is not host:port"),
        ('[gateway]\nmax_body_bytes = "lots"\n', "gateway.max_body_bytes", "is not a size"),
        ('[[neurons]]\nname = "a"\nendpoint = "ftp://x"\n', "neurons[0].endpoint", "http(s) URL"),
        ('[[neurons]]\nname = "a b"\nendpoint = "http://x"\n', "neurons[0].name", "letters"),
        ("[health]\nmissed_beats = 0\n", "health.missed_beats", "must be >= 1"),
        ("[eviction]\nidle_ttl_s = -1\n", "eviction.idle_ttl_s", "must be >= 0"),
    ],
)
def test_bad_values_name_the_key(text, key, fragment):
    message = error_for(text, GatewayConfig)
    assert f"bad value for `{key}`" in message
    assert fragment in message


def test_duplicate_neuron_names_are_refused():
    text = (
        '[[neurons]]\nname = "a"\nendpoint = "http://x:1"\n'
        '[[neurons]]\nname = "a"\nendpoint = "http://y:1"\n'
    )
    assert "names must be unique" in error_for(text, GatewayConfig)


def test_invalid_toml_is_reported_as_such():
    assert error_for("gateway = [", GatewayConfig).startswith("cortex.toml: not valid TOML")


def test_full_gateway_config_decodes(tmp_path):
    path = tmp_path / "cortex.toml"
    path.write_text(
        """
[gateway]
listen = "0.0.0.0:8080"
models_file = "models.toml"
max_body_bytes = "2MiB"

[[neurons]]
name = "gpu-a"
endpoint = "http://10.0.0.5:13131/"

[[neurons]]
name = "gpu-b"
endpoint = "http://10.0.0.6:13131"
token = "secret"

[eviction]
strategy = "priority"
idle_ttl_s = 600

[auth]
api_keys = ["k1"]
admin_token = "adm"

[aliases]
"claude-*" = "qwen"
"""
    )
    config = load_config(path, GatewayConfig)
    assert config.gateway.max_body == 2 * 1024**2
    assert config.neurons[0].endpoint == "http://10.0.0.5:13131"  # trailing slash dropped
    assert config.neurons[1].token == "secret"
    assert config.eviction.strategy == "priority"
    assert config.aliases == {"claude-*": "qwen"}


def test_models_file():
    text = """
[[models]]
id = "qwen-7b"
path = "Qwen2.5-7B-exl2"
backend = "exllamav2"
neurons = ["gpu-a"]
pin = true
priority = 5
max_seq_len = 8192
cache_type = "q6"
memory_estimate = "6.5GiB"
"""
    models = decode_config(text, ModelsConfig, "models.toml").models
    assert models[0].memory_estimate_bytes == int(6.5 * 1024**3)
    assert models[0].neuron_path == "Qwen2.5-7B-exl2"
    message = error_for('[[models]]\nid = "a"\ncache_type = "q5"\n', ModelsConfig, "models.toml")
    assert message.startswith("models.toml: bad value for `models[0].cache_type`")
    repeated = '[[models]]\nid = "a"\n[[models]]\nid = "a"\n'
    assert "ids must be unique" in error_for(repeated, ModelsConfig, "models.toml")


def test_neuron_budgets():
    config = decode_config(
        '[neuron]\nmemory_budget = { cpu = "2GiB", "cuda:0" = "50%" }\n', NeuronConfig, "n.toml"
    )
    assert config.neuron.budget_for("cpu", 64 * 1024**3) == 2 * 1024**3
    assert config.neuron.budget_for("cuda:0", 80 * 1024**3) == 40 * 1024**3
    assert config.neuron.budget_for("cuda:1", 100) == 90  # the default share
    message = error_for('[neuron]\nmemory_budget = "120%"\n', NeuronConfig, "neuron.toml")
    assert "`neuron.memory_budget`" in message and "(0, 100]" in message


def test_models_dir_defaults_to_local_models_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    section = load_config(None, NeuronConfig).neuron
    assert section.resolved_models_dir() == tmp_path / "data" / "cortex" / "models"
    (tmp_path / "models").mkdir()
    assert section.resolved_models_dir() == tmp_path / "models"


def test_value_parsers():
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("1.5 GB") == 1_500_000_000
    assert parse_size(1024) == 1024
    assert parse_budget("25%", 400) == 100
    assert parse_listen("[::1]:8080") == ("::1", 8080)
    with pytest.raises(ValueError):
        parse_size("-3")
    with pytest.raises(ValueError):
        parse_listen("host:99999")
