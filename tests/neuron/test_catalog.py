"""The models directory scan: formats, figures for the gateway, what can load where."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from safetensors.numpy import save_file

from cortex.services.neuron.backends import BackendChooser
from cortex.services.neuron.catalog import ModelCatalog, ModelInspectionError, inspect_model

CPU = BackendChooser(has_cuda=False)


def test_demo_model_figures(demo_models):
    model = inspect_model(demo_models.tiny, "demo-tiny", CPU.backends_for)
    assert model.format == "safetensors"
    assert model.dtype == "bfloat16"
    assert model.architecture == "LlamaForCausalLM"
    assert model.max_seq_len == 2048
    # 2 (K and V) * 2 layers * 2 kv heads * head_dim 16 * 2 bytes
    assert model.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2
    assert model.parameters > 100_000
    assert model.size_bytes > model.parameters * 2
    assert model.backends == ["transformers"]


def _fake_exl2(folder, demo_models, *, marker_in: str) -> None:
    folder.mkdir()
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(demo_models.tiny / name, folder / name)
    config = json.loads((demo_models.tiny / "config.json").read_text())
    if marker_in == "config":
        config["quantization_config"] = {"quant_method": "exl2", "bits": 4.0}
    (folder / "config.json").write_text(json.dumps(config))
    tensors = {"model.layers.0.self_attn.q_proj.q_weight": np.zeros((4, 4), dtype=np.int32)}
    if marker_in == "config":
        tensors = {"model.layers.0.self_attn.q_proj.weight": np.zeros((4, 4), dtype=np.float16)}
    save_file(tensors, str(folder / "output.safetensors"))


@pytest.mark.parametrize("marker_in", ["tensors", "config"])
def test_exl2_is_recognised_and_only_exllamav2_with_cuda_loads_it(tmp_path, demo_models, marker_in):
    _fake_exl2(tmp_path / "q4", demo_models, marker_in=marker_in)
    model = inspect_model(tmp_path / "q4", "q4", CPU.backends_for)
    assert model.format == "exl2"
    assert model.backends == []  # no CUDA here
    if marker_in == "config":
        assert model.bits_per_weight == 4.0


def test_scan_skips_folders_that_are_not_models_and_notices_changes(tmp_path, demo_models):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "readme.txt").write_text("not a model")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{}")
    (broken / "tokenizer.json").write_text("{}")
    (broken / "model.safetensors").write_bytes(b"garbage")
    catalog = ModelCatalog(tmp_path, CPU.backends_for)
    assert catalog.scan() is False  # nothing loadable: unchanged (empty)
    assert catalog.listing() == []
    shutil.copytree(demo_models.tiny, tmp_path / "tiny")
    assert catalog.scan() is True
    assert [m.id for m in catalog.listing()] == ["tiny"]
    assert catalog.scan() is False


def test_resolve_by_id_or_path_and_a_clear_error_otherwise(tmp_path, demo_models):
    catalog = ModelCatalog(demo_models.root, CPU.backends_for)
    catalog.scan()
    assert catalog.resolve("demo-tiny")[0] == "demo-tiny"
    model_id, path = catalog.resolve(str(demo_models.small))
    assert (model_id, path) == ("demo-small", demo_models.small)
    with pytest.raises(ModelInspectionError, match="available: demo-long, demo-small, demo-tiny"):
        catalog.resolve("nope")
    with pytest.raises(ModelInspectionError, match="does not exist"):
        catalog.resolve(str(tmp_path / "missing"))
