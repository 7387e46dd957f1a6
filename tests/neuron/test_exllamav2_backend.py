"""The exllamav2 backend without a GPU: argument mapping, capability decisions, what the
real 0.3.2 API checks on what the engine gives it (mirrored by fake_exllamav2), and the
clear errors a CPU-only host or a missing / stale extension gives. (The GPU run is
tests/gpu/run_exllamav2.sh.)"""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import torch
from neuron.fake_exllamav2 import (
    FakeExLlamaV2AttnWithoutFlash,
    FakeExLlamaV2AttnWithPaged,
    FakeExLlamaV2Config,
    FakeExLlamaV2DynamicGenerator,
    FakeExLlamaV2GeneratorModule,
    FakeExLlamaV2Module,
    FakeExLlamaV2SamplerSettings,
    fake_fast_fadd_cpu,
    install_filter_module,
)
from tokenizers import Tokenizer, models

from cortex.common.errors import CortexError
from cortex.services.neuron.backends import BackendChooser
from cortex.services.neuron.engines import exllamav2_engine as exl
from cortex.services.neuron.engines.base import (
    Capabilities,
    EngineOptions,
    EngineUnavailable,
    Sequence,
)
from cortex.services.neuron.pipeline.constrain import Constraint
from cortex.services.neuron.pipeline.grammar import Lit
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
    assert float(settings.token_bias[3]) == 5.0 and float(settings.token_bias[2]) == 0.0


@pytest.mark.parametrize("vocab_size", [100, 128256, 151936])
def test_logit_bias_adds_to_a_batch_of_padded_float32_logits(vocab_size):
    # The generator's logits are (batch, q, padded_vocab_size) float32, and exllamav2
    # adds token_bias with ext_c.fast_fadd_cpu: a float16 or unpadded bias is an error
    # raised out of iterate(), which ends every request of the batch.
    generator = FakeExLlamaV2DynamicGenerator(
        config=FakeExLlamaV2Config(vocab_size=vocab_size), max_batch_size=2
    )
    params = SamplingParams(logit_bias={3: 5.0, vocab_size - 1: -100.0})
    settings = exl.sampler_settings(FakeExLlamaV2SamplerSettings, params, vocab_size, torch)
    logits = torch.zeros((2, 1, generator.padded_vocab_size), dtype=torch.float32)
    fake_fast_fadd_cpu(logits, settings.token_bias)
    for row in logits.view(2, -1):
        assert float(row[3]) == 5.0 and float(row[vocab_size - 1]) == -100.0
        assert float(row.abs().sum()) == 105.0


def test_temperature_zero_is_greedy():
    settings = exl.sampler_settings(
        FakeExLlamaV2SamplerSettings, SamplingParams(temperature=0.0, top_p=0.5), 10
    )
    assert settings.top_k == 1
    assert settings.top_p == 0.0


def test_capacity_plan_unpaged_runs_one_job_in_a_256_multiple_cache():
    plan = exl.plan_capacity(1000, 4, paged=False, max_forward_tokens=2048)
    assert plan.max_batch_size == 1
    assert plan.cache_tokens == 1024
    assert plan.cache_tokens % 256 == 0


def test_capacity_plan_paged_gives_each_job_a_full_context():
    plan = exl.plan_capacity(4096, 3, paged=True, max_forward_tokens=2048)
    assert plan.max_batch_size == 3
    assert plan.cache_tokens == 3 * 4096
    assert plan.max_seq_len == 4096


@pytest.mark.parametrize(("max_input_len", "wanted", "batch"), [(2048, 300, 256), (1024, 200, 128)])
def test_capacity_plan_clamps_the_batch_to_what_the_generator_accepts(max_input_len, wanted, batch):
    # ExLlamaV2DynamicGenerator asserts max_q_size (8) * max_batch_size <= the config's
    # max_batch_size * max_input_len (1 * 2048 by default; 1024 with set_low_mem).
    config = FakeExLlamaV2Config(vocab_size=128256, max_input_len=max_input_len)
    plan = exl.plan_capacity(
        2048, wanted, paged=True, max_forward_tokens=config.max_batch_size * max_input_len
    )
    assert plan.max_batch_size == batch
    FakeExLlamaV2DynamicGenerator(config=config, max_batch_size=plan.max_batch_size)


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


def _engine_on(generator, vocab_size: int) -> exl.ExLlamaV2Engine:
    """The engine as load() leaves it, over the fake generator."""
    engine = exl.ExLlamaV2Engine(EngineOptions(path="unused", devices=["cuda:0"]))
    engine._torch = torch
    engine._generator_module = FakeExLlamaV2GeneratorModule
    engine.generator = generator
    engine.capabilities = Capabilities(2, 2048, vocab_size, ["cuda:0"])
    return engine


def test_a_constraint_with_no_legal_token_ends_only_its_own_request(monkeypatch):
    # A grammar the model's vocabulary cannot finish: after "b", no token starts with
    # "c". exllamav2 asserts "Filter excluded all tokens" out of iterate() when a filter
    # passes nothing, which would end every request of the batch.
    install_filter_module(monkeypatch)
    tokenizer = Tokenizer(models.WordLevel({"a": 0, "b": 1, "</s>": 2}, unk_token="a"))
    generator = FakeExLlamaV2DynamicGenerator(
        config=FakeExLlamaV2Config(vocab_size=3), max_batch_size=2, free_token=0
    )
    engine = _engine_on(generator, 3)
    stuck = Sequence("stuck", [0], 8, SamplingParams(), (2,), Constraint(Lit("bc"), tokenizer, [2]))
    engine.add(stuck)
    engine.add(Sequence("free", [0], 8, SamplingParams(), (2,)))
    first = {o.seq_id: o for o in engine.step()}
    assert first["stuck"].token_ids == [1] and first["stuck"].finished is None
    second = {o.seq_id: o for o in engine.step()}
    assert second["stuck"].finished == "error"
    assert "no token of this model can continue" in second["stuck"].error
    assert second["free"].finished is None and second["free"].token_ids == [0]
    assert engine.active == 1
    assert {o.seq_id for o in engine.step()} == {"free"}


def test_exllamav2_workers_get_cuda_visible_devices_at_spawn(tmp_path):
    """The worker of an exllamav2 load starts with CUDA_VISIBLE_DEVICES naming its GPUs
    (CUDA reads it once, at first use), never a spare prewarmed without it."""
    import asyncio

    from cortex.common.config import NeuronSection
    from cortex.services.neuron.manager import ModelManager
    from cortex.services.neuron.worker import protocol as p
    from cortex.services.neuron.worker.process import load_env

    def environ(pid: int) -> dict[str, str]:
        raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
        return dict(item.decode().split("=", 1) for item in raw if b"=" in item)

    async def spawned_environ(load: p.Load) -> dict[str, str]:
        manager = ModelManager(NeuronSection(prewarm_worker=True), tmp_path)
        manager._ensure_spare()  # what start() does: a spare, prewarmed without the GPUs
        worker = await manager.worker_for(load)
        try:
            await worker.ready
            return environ(worker.pid)
        finally:
            await asyncio.gather(manager.close(), worker.stop(grace=3))

    load = p.Load(model_id="m", path="m", backend="exllamav2", devices=["cuda:1", "cuda:3"])
    assert asyncio.run(spawned_environ(load))["CUDA_VISIBLE_DEVICES"] == "1,3"
    # Other backends take the spare: torch places them on their device itself.
    assert (
        load_env(p.Load(model_id="m", path="m", backend="transformers", devices=["cuda:1"])) == {}
    )


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


# ---------------------------------------------------------------- installs that cannot run

_CHECK_EACH = """
import sys, torch
from cortex.services.neuron.engines.base import EngineUnavailable
from cortex.services.neuron.engines.exllamav2_install import require_extension
for folder in sys.argv[1:]:
    sys.path.insert(0, folder)
    try:
        require_extension(torch)
        print("ok")
    except EngineUnavailable as exc:
        print(exc)
    sys.path.remove(folder)
"""


def _install(root: Path, version: str, extension_source: str | None = None, **link) -> Path:
    """An exllamav2 install in ``root``: the dist-info pip writes, the package, and (if
    given) an ``exllamav2_ext`` extension compiled from C with the host's gcc."""
    (root / "exllamav2").mkdir(parents=True)
    (root / "exllamav2" / "__init__.py").write_text("")
    info = root / f"exllamav2-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: exllamav2\nVersion: {version}\n")
    if extension_source is not None:
        (root / "ext.c").write_text(extension_source)
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        target = root / f"exllamav2_ext{suffix}"
        command = ["gcc", "-shared", "-fPIC", "-o", str(target), str(root / "ext.c")]
        command += link.get("libraries", [])
        subprocess.run(command, check=True, capture_output=True, timeout=60)
    return root


def test_a_missing_or_stale_extension_is_refused_with_the_fix(tmp_path):
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is needed to compile the stand-in extensions and is not installed")
    # Built against another torch: a symbol this torch's libraries no longer have.
    other_torch = _install(
        tmp_path / "undefined",
        "0.3.2",
        "void _ZN3c1019UndefinedTensorImpl10_singletonE(void);\n"
        "void *PyInit_exllamav2_ext(void) { _ZN3c1019UndefinedTensorImpl10_singletonE();"
        " return 0; }\n",
    )
    # Built for CUDA 12: linked to a libcudart.so.12 this host does not have.
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "cudart.c").write_text("int cudaRuntimeGetVersion(int *v) { return 0; }\n")
    library = ["-Wl,-soname,libcudart.so.12", "-o", str(stub / "libcudart.so.12")]
    subprocess.run(
        [gcc, "-shared", "-fPIC", *library, str(stub / "cudart.c")], check=True, timeout=60
    )
    other_cuda = _install(
        tmp_path / "cuda12",
        "0.3.2",
        "int cudaRuntimeGetVersion(int *v);\n"
        "void *PyInit_exllamav2_ext(void) { int v; cudaRuntimeGetVersion(&v); return 0; }\n",
        libraries=[str(stub / "libcudart.so.12")],
    )
    shutil.rmtree(stub)
    folders = [
        tmp_path / "nothing",
        _install(tmp_path / "pure", "0.3.2"),  # PyPI's wheel: no compiled extension
        _install(tmp_path / "tagged", "0.3.2+cu128.torch2.9.0"),  # the last prebuilt one
        other_torch,
        other_cuda,
    ]
    folders[0].mkdir()
    result = subprocess.run(
        [sys.executable, "-c", _CHECK_EACH, *map(str, folders)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    nothing, pure, tagged, undefined, cuda12 = result.stdout.strip().split("\n")
    fix = "tests/gpu/build_exllamav2.sh and pip install the wheel"
    here = f"torch {torch.__version__}"
    assert nothing.startswith("backend exllamav2 is not installed") and fix in nothing
    assert "pip install 'cortex-fleet[cuda]'" in nothing
    assert "without its compiled CUDA extension" in pure and fix in pure
    assert f"built for torch 2.9.0 / CUDA 12.8, and this worker has {here}" in tagged
    assert fix in tagged
    assert "undefined symbol: _ZN3c1019UndefinedTensorImpl10_singletonE" in undefined
    assert f"does not load with {here}" in undefined and fix in undefined
    assert "libcudart.so.12: cannot open shared object file" in cuda12 and fix in cuda12


def test_binary_wheel_versions_name_their_torch_and_cuda():
    from cortex.services.neuron.engines.exllamav2_install import built_for

    assert built_for("0.3.2+cu130.torch2.11.0") == ("13.0", "2.11.0")
    assert built_for("0.3.2+cu128.torch2.9.0") == ("12.8", "2.9.0")
    assert built_for("0.3.2") is None
