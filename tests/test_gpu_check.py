"""The GPU check script (tests/gpu, issue 6): what of it runs without a GPU, run here."""

from __future__ import annotations

import json

import pytest
from gpu import exl2_check as check
from support.neuron import start_neuron


def test_build_env_targets_this_gpu_and_finds_torchs_cuda_headers(tmp_path):
    site = tmp_path / "site-packages"
    for library in ("cublas", "cusparse", "cusolver", "curand"):
        (site / "nvidia" / library / "include").mkdir(parents=True)
    (site / "nvidia" / "cu13" / "include").mkdir(parents=True)
    nvcc = tmp_path / "cuda-13.0" / "bin" / "nvcc"
    nvcc.parent.mkdir(parents=True)
    nvcc.touch()
    env = check.cuda_build_env(
        {"PATH": "/usr/bin", "CPATH": "/opt/inc"}, (9, 0), [str(site)], str(nvcc), 16, "/ext"
    )
    assert env["TORCH_CUDA_ARCH_LIST"] == "9.0"
    assert env["MAX_JOBS"] == "16"
    assert env["TORCH_EXTENSIONS_DIR"] == "/ext"
    if not (check.Path("/usr/local/cuda/bin/nvcc")).exists():
        assert env["CUDA_HOME"] == str(tmp_path / "cuda-13.0")
    headers = env["CPATH"].split(":")
    assert headers[-1] == "/opt/inc"
    assert {check.Path(h).parent.name for h in headers[:-1]} == {
        "cublas",
        "cusparse",
        "cusolver",
        "curand",
        "cu13",
    }


def test_cuda_major_versions():
    assert check.cuda_major("13.0") == 13
    assert check.cuda_major("12.8") == 12
    assert check.cuda_major(None) is None


def test_bytes_per_token_counts_weights_but_the_embedding_plus_the_kv_cache(demo_models):
    config = json.loads((demo_models.small / "config.json").read_text())
    everything = check.safetensors_bytes(demo_models.small)
    embedding = config["vocab_size"] * config["hidden_size"] * 2  # bf16
    kv = check.kv_bytes_per_token(config)
    assert kv == 2 * 8 * 4 * 64 * 2  # K and V, 8 layers, 4 KV heads of 64, fp16
    assert (
        check.bytes_per_decoded_token(demo_models.small, 100) == everything - embedding + 100 * kv
    )


def test_decode_rate_excludes_prefill():
    assert check.decode_rate(101, first_token_at=2.0, last_token_at=4.0) == 50.0
    assert check.decode_rate(1, 2.0, 4.0) == 0.0


def test_table_lines_up():
    table = check.format_table([("model", "tok/s"), ("llama-8b-fp16", "123.4")])
    assert table.splitlines() == [
        "model          tok/s",
        "-------------  -----",
        "llama-8b-fp16  123.4",
    ]


def test_prompt_is_exactly_128_ordinary_tokens(demo_models):
    ids = check.prompt_ids()
    assert len(ids) == check.PROMPT_TOKENS
    assert max(ids) < 818 and min(ids) > 100


@pytest.mark.slow
def test_stream_measurement_against_a_real_neuron(demo_models, tmp_path):
    with start_neuron(demo_models.root, tmp_path) as neuron:
        neuron.load("demo-tiny")
        figures = check.stream_once(neuron.url, "demo-tiny")
    assert figures["completion_tokens"] == check.NEW_TOKENS
    assert figures["decode_tokens_per_s"] > 0
    assert figures["ttft_ms"] > 0


def test_report_without_a_gpu_says_what_failed():
    text = check.report(
        {
            "started": "now",
            "environment": {"gpu": "X", "flash_attn": None},
            "serve_and_measure": {"error": "RuntimeError: no GPU"},
        }
    )
    assert "serving failed: RuntimeError: no GPU" in text
    assert "flash-attn is not importable" in text
