"""The demo model: deterministic, standard Hugging Face layout, loads and generates."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from tokenizers import Tokenizer

from cortex.services.neuron.demo import generate
from cortex.services.neuron.demo.generate import MARKER_TOKENS, SPECIAL_TOKENS

FILES = {
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def test_layout_is_the_standard_hugging_face_one(demo_models):
    for path in (demo_models.tiny, demo_models.small):
        assert {p.name for p in path.iterdir()} == FILES
        config = json.loads((path / "config.json").read_text())
        assert config["architectures"] == ["LlamaForCausalLM"]
        template = json.loads((path / "tokenizer_config.json").read_text())["chat_template"]
        assert "<|im_start|>" in template and "tool_call" in template


def test_sizes_differ_in_memory_footprint(demo_models):
    tiny = (demo_models.tiny / "model.safetensors").stat().st_size
    small = (demo_models.small / "model.safetensors").stat().st_size
    assert small > 50 * tiny


def test_same_command_writes_the_same_bytes(demo_models, tmp_path):
    again = generate(tmp_path / "again", "tiny")
    for name in FILES:
        assert (again / name).read_bytes() == (demo_models.tiny / name).read_bytes(), name


def test_markers_and_chat_tokens_are_single_tokens(demo_models):
    tokenizer = Tokenizer.from_file(str(demo_models.tiny / "tokenizer.json"))
    for token in SPECIAL_TOKENS + MARKER_TOKENS:
        ids = tokenizer.encode(token, add_special_tokens=False).ids
        assert ids == [tokenizer.token_to_id(token)], token
    generation = json.loads((demo_models.tiny / "generation_config.json").read_text())
    assert tokenizer.token_to_id("<|im_end|>") in generation["eos_token_id"]


def test_an_emoji_spans_several_byte_level_tokens(demo_models):
    tokenizer = Tokenizer.from_file(str(demo_models.tiny / "tokenizer.json"))
    ids = tokenizer.encode("🙂", add_special_tokens=False).ids
    assert len(ids) > 1
    assert tokenizer.decode(ids) == "🙂"


def test_loads_with_transformers_and_generates_tokens(demo_models):
    torch = pytest.importorskip("torch")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(demo_models.tiny)
    model = AutoModelForCausalLM.from_pretrained(demo_models.tiny, dtype=torch.float32)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hello"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    output = model.generate(**prompt, max_new_tokens=8, do_sample=False)
    assert output.shape[1] == prompt["input_ids"].shape[1] + 8
    assert tokenizer.decode(output[0]).startswith("<|im_start|>system\n")


def test_cli_writes_the_model(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "cortex.services.neuron.cli",
            "demo-model",
            "--out",
            str(tmp_path / "m"),
            "--size",
            "tiny",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "wrote demo model (tiny)" in result.stdout
    assert (tmp_path / "m" / "model.safetensors").is_file()


def test_unknown_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="choose one of"):
        generate(tmp_path / "x", "huge")
