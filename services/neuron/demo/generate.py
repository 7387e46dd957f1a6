"""Write the demo model: a small Llama-architecture model in the Hugging Face layout.

The weights are seeded random numbers, so the model says nothing meaningful, but it
is a real model: every byte goes through the same loaders, chat template, tokenizer
and token pipeline as a downloaded one. The byte-level BPE tokenizer is trained on
``corpus.txt`` (shipped beside this file) and carries the ChatML special tokens and
the ``<think>``/``</think>`` and ``<tool_call>``/``</tool_call>`` markers as single
tokens. Same command, same bytes.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).parent

# ChatML control tokens: special (skipped when decoding for display).
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
# Markers the token pipeline routes: added tokens, decoded as text (as in Qwen's tokenizers).
MARKER_TOKENS = [
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
]
VOCAB_SIZE = 2048
SEED = 1234


@dataclass(frozen=True)
class DemoSize:
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    # Rows of the embedding and lm_head. None: the tokenizer's size. GPU benchmark shapes
    # pad it to Llama 3's 128256, so bytes read per token match the real models.
    vocab_size: int | None = None
    dtype: str = "bfloat16"
    tie_word_embeddings: bool = False

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


# The demo fleet's models; the other sizes are GPU benchmark shapes.
DEMO_SIZES = ("tiny", "small", "long")
SIZES = {
    "tiny": DemoSize(64, 192, 2, 4, 2, 2048),
    "small": DemoSize(512, 1408, 8, 8, 4, 4096),
    # demo-tiny's shape with 131072 positions, for clients that send long prompts and ask
    # for large max_tokens (Claude Code, Codex). Random weights make any length valid.
    "long": DemoSize(64, 192, 2, 4, 2, 131072),
    # Realistic shapes for GPU benchmarks (issue 6): Llama 3.2 1B and Llama 3 8B, fp16.
    # 2.5 GB and 16 GB on disk: generate them on the GPU host (device="cuda" is faster).
    "1b": DemoSize(2048, 8192, 16, 32, 8, 8192, 128256, "float16", tie_word_embeddings=True),
    "8b": DemoSize(4096, 14336, 32, 32, 8, 8192, 128256, "float16"),
}


def default_name(size: str) -> str:
    return f"demo-{size}"


def generate(
    out_dir: str | Path, size: str = "tiny", *, seed: int = SEED, device: str = "cpu"
) -> Path:
    """Write the demo model of ``size`` into ``out_dir`` (created; replaced if present).

    ``device`` draws the random weights there ("cuda" for the large shapes); the bytes
    are the same for the same device, not across devices.
    """
    if size not in SIZES:
        raise ValueError(f"unknown demo model size {size!r}; choose one of {', '.join(SIZES)}")
    out = Path(out_dir)
    # Write into a sibling temp folder and rename, so a reader never sees half a model.
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        tokenizer = train_tokenizer()
        tokenizer.save(str(staging / "tokenizer.json"))
        shape = SIZES[size]
        vocab_size = shape.vocab_size or tokenizer.get_vocab_size()
        ids = {token: tokenizer.token_to_id(token) for token in SPECIAL_TOKENS + MARKER_TOKENS}
        _write_json(staging / "config.json", _model_config(shape, vocab_size, ids))
        _write_json(staging / "generation_config.json", _generation_config(ids))
        _write_json(staging / "tokenizer_config.json", _tokenizer_config(tokenizer, shape))
        _write_json(
            staging / "special_tokens_map.json",
            {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"},
        )
        _write_weights(staging / "model.safetensors", shape, vocab_size, seed, device)
        # mkdtemp makes the folder private; models are shared with the neuron's user.
        staging.chmod(0o755)
        for file in staging.iterdir():
            file.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def train_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    corpus = (HERE / "corpus.txt").read_text(encoding="utf-8")
    tokenizer.train_from_iterator(corpus.splitlines(), trainer=trainer)
    tokenizer.add_tokens([AddedToken(token, normalized=False) for token in MARKER_TOKENS])
    return tokenizer


def _model_config(shape: DemoSize, vocab_size: int, ids: dict[str, int]) -> dict:
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "hidden_size": shape.hidden_size,
        "intermediate_size": shape.intermediate_size,
        "num_hidden_layers": shape.num_hidden_layers,
        "num_attention_heads": shape.num_attention_heads,
        "num_key_value_heads": shape.num_key_value_heads,
        "head_dim": shape.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": shape.max_position_embeddings,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "tie_word_embeddings": shape.tie_word_embeddings,
        "vocab_size": vocab_size,
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "torch_dtype": shape.dtype,
        "initializer_range": 0.02,
        "use_cache": True,
    }


def _generation_config(ids: dict[str, int]) -> dict:
    return {
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]],
        "pad_token_id": ids["<|endoftext|>"],
        "do_sample": True,
        "temperature": 0.7,
        "top_p": 0.9,
    }


def _tokenizer_config(tokenizer, shape: DemoSize) -> dict:
    added = {}
    for token in SPECIAL_TOKENS + MARKER_TOKENS:
        added[str(tokenizer.token_to_id(token))] = {
            "content": token,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": token in SPECIAL_TOKENS,
        }
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": shape.max_position_embeddings,
        "clean_up_tokenization_spaces": False,
        "added_tokens_decoder": added,
        "chat_template": (HERE / "chat_template.jinja").read_text(encoding="utf-8"),
    }


def _write_weights(
    path: Path, shape: DemoSize, vocab_size: int, seed: int, device: str = "cpu"
) -> None:
    import torch
    from safetensors.torch import save_file

    generator = torch.Generator(device=device).manual_seed(seed)
    dtype = getattr(torch, shape.dtype)

    def normal(*dims: int) -> torch.Tensor:
        weights = torch.randn(*dims, generator=generator, device=device) * 0.02
        return weights.to(dtype).cpu()

    def ones(dim: int) -> torch.Tensor:
        return torch.ones(dim, dtype=dtype)

    hidden, inter = shape.hidden_size, shape.intermediate_size
    q_dim = shape.num_attention_heads * shape.head_dim
    kv_dim = shape.num_key_value_heads * shape.head_dim
    tensors: dict[str, torch.Tensor] = {"model.embed_tokens.weight": normal(vocab_size, hidden)}
    for layer in range(shape.num_hidden_layers):
        prefix = f"model.layers.{layer}"
        tensors[f"{prefix}.input_layernorm.weight"] = ones(hidden)
        tensors[f"{prefix}.self_attn.q_proj.weight"] = normal(q_dim, hidden)
        tensors[f"{prefix}.self_attn.k_proj.weight"] = normal(kv_dim, hidden)
        tensors[f"{prefix}.self_attn.v_proj.weight"] = normal(kv_dim, hidden)
        tensors[f"{prefix}.self_attn.o_proj.weight"] = normal(hidden, q_dim)
        tensors[f"{prefix}.post_attention_layernorm.weight"] = ones(hidden)
        tensors[f"{prefix}.mlp.gate_proj.weight"] = normal(inter, hidden)
        tensors[f"{prefix}.mlp.up_proj.weight"] = normal(inter, hidden)
        tensors[f"{prefix}.mlp.down_proj.weight"] = normal(hidden, inter)
    tensors["model.norm.weight"] = ones(hidden)
    if not shape.tie_word_embeddings:
        tensors["lm_head.weight"] = normal(vocab_size, hidden)
    save_file(tensors, str(path), metadata={"format": "pt"})


def _write_json(path: Path, payload: dict) -> None:
    path.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
