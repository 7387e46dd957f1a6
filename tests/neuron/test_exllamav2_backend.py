"""The exllamav2 backend without a GPU: argument mapping, capability decisions, and the
clear errors a CPU-only host gives. (The real GPU run is a separate issue.)"""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from neuron.fake_exllamav2 import (
    FakeExLlamaV2AttnWithoutFlash,
    FakeExLlamaV2AttnWithPaged,
    FakeExLlamaV2Module,
    FakeExLlamaV2SamplerSettings,
)

from cortex.common.errors import CortexError
from cortex.services.neuron.backends import BackendChooser
from cortex.services.neuron.engines import exllamav2_engine as exl
from cortex.services.neuron.engines.base import EngineOptions, EngineUnavailable
from cortex.services.neuron.pipeline.sampling import SamplingParams


def test_every_sampler_field_is_set_from_openai_defaults():
    settings = exl.sampler_settings(FakeExLlamaV2SamplerSettings, SamplingParams(), 100)
    # OpenAI's defaults, not exllamav2's (0.8 / 50 / 0.8 / 1.025).
    assert settings.temperature == 1.0
    assert settings.top_k == 0
    assert settings.top_p == 0.0  # 1.0 means off; exllamav2 spells off as 0
    assert settings.token_repetition_penalty == 1.0
    assert settings.token_presence_penalty == 0.0
    assert settings.token_frequency_penalty == 0.0


def test_sampler_mapping_carries_each_parameter():
    params = SamplingParams(
        temperature=0.7,
        top_p=0.9,
        top_k=40,
        min_p=0.05,
        presence_penalty=0.5,
        frequency_penalty=0.25,
        repetition_penalty=1.1,
        logit_bias={3: 5.0},
    )
    settings = exl.sampler_settings(FakeExLlamaV2SamplerSettings, params, 10, torch)
    assert (settings.temperature, settings.top_p, settings.top_k) == (0.7, 0.9, 40)
    assert settings.min_p == 0.05
    assert settings.token_presence_penalty == 0.5
    assert settings.token_frequency_penalty == 0.25
    assert settings.token_repetition_penalty == 1.1
    assert settings.token_bias.shape == (10,)
    assert float(settings.token_bias[3]) == 5.0 and float(settings.token_bias[2]) == 0.0


def test_temperature_zero_is_greedy():
    settings = exl.sampler_settings(
        FakeExLlamaV2SamplerSettings, SamplingParams(temperature=0.0, top_p=0.5), 10
    )
    assert settings.top_k == 1
    assert settings.top_p == 0.0


def test_capacity_plan_unpaged_runs_one_job_in_a_256_multiple_cache():
    plan = exl.plan_capacity(1000, 4, paged=False)
    assert plan.max_batch_size == 1
    assert plan.cache_tokens == 1024
    assert plan.cache_tokens % 256 == 0


def test_capacity_plan_paged_gives_each_job_a_full_context():
    plan = exl.plan_capacity(4096, 3, paged=True)
    assert plan.max_batch_size == 3
    assert plan.cache_tokens == 3 * 4096
    assert plan.max_seq_len == 4096


def test_paged_mode_needs_flash_attn_with_paging():
    assert exl.paged_attention_available(FakeExLlamaV2AttnWithPaged)
    assert not exl.paged_attention_available(FakeExLlamaV2AttnWithoutFlash)


@pytest.mark.parametrize(
    ("cache_type", "name"),
    [
        ("fp16", "FakeExLlamaV2Cache"),
        ("q8", "FakeExLlamaV2Cache_Q8"),
        ("q6", "FakeExLlamaV2Cache_Q6"),
        ("q4", "FakeExLlamaV2Cache_Q4"),
    ],
)
def test_cache_type_picks_the_cache_class(cache_type, name):
    assert exl.cache_class(FakeExLlamaV2Module, cache_type).__name__ == name


def test_unknown_cache_type_is_refused():
    with pytest.raises(EngineUnavailable, match="cache type"):
        exl.cache_class(FakeExLlamaV2Module, "q3")


def test_eos_reasons_map_to_finish_reasons():
    assert exl.finish_reason("max_new_tokens") == "length"
    for reason in ("stop_token", "stop_string", "end_filter"):
        assert exl.finish_reason(reason) == "stop"


def test_result_tokens_include_those_held_until_the_stop_token():
    # The shapes ExLlamaV2DynamicGenerator.iterate() emits (dynamic.py, emit()): while an
    # emoji's bytes are incomplete the tokens are held; a stop token then ends the job
    # with the held bytes and the stop token under "held", not under "token_ids".
    streaming = {"stage": "streaming", "eos": False, "token_ids": torch.tensor([[11, 12]])}
    holding = {"stage": "streaming", "eos": False}
    ending = {
        "stage": "streaming",
        "eos": True,
        "eos_reason": "stop_token",
        "held": {"text": "", "token_ids": torch.tensor([[250, 227, 2]])},
    }
    at_length = {"stage": "streaming", "eos": True, "token_ids": torch.tensor([[7]])}
    assert exl.result_token_ids(streaming) == [11, 12]
    assert exl.result_token_ids(holding) == []
    assert exl.result_token_ids(ending) == [250, 227, 2]
    assert exl.result_token_ids(at_length) == [7]


def test_requested_gpus_become_cuda_visible_devices():
    assert exl.visible_devices(["cuda:1", "cuda:3"]) == "1,3"
    assert exl.visible_devices([]) is None


def test_engine_load_without_cuda_is_a_clear_error(demo_models):
    engine = exl.ExLlamaV2Engine(EngineOptions(path=str(demo_models.tiny), devices=[]))
    with pytest.raises(EngineUnavailable, match="CUDA"):
        engine.load(lambda done, total: None)


def test_auto_backend_and_explicit_exllamav2_on_a_cpu_host():
    chooser = BackendChooser(has_cuda=False)
    assert chooser.choose(None, "safetensors") == "transformers"
    assert chooser.choose("auto", "safetensors") == "transformers"
    with pytest.raises(CortexError) as error:
        chooser.choose("exllamav2", "safetensors")
    assert error.value.status == 400 and "CUDA" in error.value.message
    with pytest.raises(CortexError) as error:
        chooser.choose(None, "exl2")
    assert error.value.status == 400 and "EXL2" in error.value.message
    assert chooser.backends_for("exl2") == []


def test_auto_picks_exllamav2_for_exl2_on_cuda(monkeypatch):
    monkeypatch.setattr("cortex.services.neuron.backends.installed", lambda name: True)
    chooser = BackendChooser(has_cuda=True)
    assert chooser.choose("auto", "exl2") == "exllamav2"
    assert chooser.choose("auto", "safetensors") == "transformers"
    with pytest.raises(CortexError, match="EXL2"):
        chooser.choose("transformers", "exl2")


def test_exllamav2_engine_module_imports_without_exllamav2():
    """The engine module must not import exllamav2 (or torch) at import time."""
    code = (
        "import sys\n"
        "import cortex.services.neuron.engines.exllamav2_engine\n"
        "bad = [m for m in ('exllamav2', 'torch') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
