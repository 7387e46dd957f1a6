"""The GPU check script (tests/gpu, issues 6 and 14): what of it runs without a GPU, run here."""

from __future__ import annotations

import json

import pytest
from gpu import exl2_check as check


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
def test_dry_run_takes_every_figure_from_a_real_neuron_and_gateway(tmp_path):
    """The GPU run's stage 4 on this CPU host (demo-long, transformers backend): every
    measurement and check runs against a real neuron and gateway, and the report has
    the BENCHMARKS.md block."""
    assert check.main(["--dry-run", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    figures = results["serve_and_measure"]["demo-long"]
    assert figures["neuron_http"]["completion_tokens"] == check.NEW_TOKENS  # EOS banned
    assert figures["neuron_http"]["decode_tokens_per_s"] > 0
    assert figures["gateway_http"]["decode_tokens_per_s"] > 0
    assert figures["prefill"]["prompt_tokens"] == check.PREFILL_TOKENS
    assert figures["concurrent"]["aggregate_tokens_per_s"] > 0
    for name in ("hang_up", "tool_call", "logit_bias", "unload"):
        assert figures[name]["ok"], (name, figures[name])
    block = (tmp_path / "benchmarks.md").read_text()
    assert "| demo-long |" in block and "logit_bias" in block


def test_report_without_a_gpu_says_what_failed():
    text, markdown = check.report(
        {
            "started": "now",
            "environment": {"gpu": "X", "flash_attn": None},
            "serve_and_measure": {"error": "RuntimeError: no GPU"},
        }
    )
    assert "serving failed: RuntimeError: no GPU" in text
    assert "flash-attn is not importable" in text
    assert "serving failed: RuntimeError: no GPU" in markdown
