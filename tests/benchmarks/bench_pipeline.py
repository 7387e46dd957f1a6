"""What the token pipeline costs per token, on the demo tokenizer and a 150k vocabulary.

    .venv/bin/python tests/benchmarks/bench_pipeline.py

- TokenPipeline.push (DecodeStream + stop strings + marker routing) on real demo ids.
- Sampler.sample on a 151,936-wide logits row (Qwen's size), CPU.
- Constrained decoding of forced tool calls with RANDOM logits (the worst case: the
  model never "wants" the structure, so draws are rejected often) over a synthetic
  byte-level BPE vocabulary of 151,643 tokens plus markers: TokenVocab build time, time
  per generated token, how often a draw was rejected and how often the slow path (the
  list of all legal tokens) ran, and its cost.

The synthetic vocabulary has realistic token shapes (1-12 bytes, leading spaces,
punctuation and quotes, digits, multi-byte characters and partial UTF-8 pieces), so
the grammar checks see what a real 150k vocabulary would give them. Prints figures;
asserts nothing.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import msgspec
import torch
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from cortex.common.openai import Tool
from cortex.services.neuron.demo import generate
from cortex.services.neuron.pipeline import constrain as constrain_module
from cortex.services.neuron.pipeline.constrain import (
    ConstrainedSampler,
    Constraint,
    tool_call_grammar,
)
from cortex.services.neuron.pipeline.decode import TokenPipeline
from cortex.services.neuron.pipeline.markers import Markers
from cortex.services.neuron.pipeline.sampling import Sampler, SamplingParams
from cortex.services.neuron.pipeline.vocab import TokenVocab, _byte_level_decoding

LOGITS_WIDTH = 151_936
BASE_TOKENS = 151_643
SCHEMA = {
    "type": "object",
    "properties": {
        "city": {"type": "string"},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
        "days": {"type": "integer", "minimum": 1, "maximum": 14},
        "hourly": {"type": "boolean"},
        "stations": {"type": "array", "items": {"type": "string", "maxLength": 12}},
        "threshold": {"type": "number"},
    },
    "required": ["city", "days", "threshold"],
}


def synthetic_tokenizer(size: int, seed: int = 0) -> Tokenizer:
    """A byte-level BPE tokenizer with ``size`` tokens of realistic shapes (no merges)."""
    rng = random.Random(seed)
    to_char = {byte: char for char, byte in _byte_level_decoding().items()}
    letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    punctuation = ['"', '",', '":', '"}', "{", "}", "[", "]", ",", ".", ":", "(", ")", "\\", "\n"]
    wide = "éüßçøñ中文字日本語한국어мирприветαβγ😀🚀"
    vocab: dict[str, int] = {}
    for byte in range(256):
        vocab[to_char[byte]] = len(vocab)
    while len(vocab) < size:
        roll = rng.random()
        if roll < 0.70:
            word = "".join(rng.choice(letters) for _ in range(rng.randint(1, 10)))
            word = (" " if rng.random() < 0.5 else "") + word
        elif roll < 0.78:
            word = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 3)))
        elif roll < 0.86:
            word = rng.choice(punctuation) + rng.choice(["", " ", ' "', "\n"]) + rng.choice(letters)
        elif roll < 0.96:
            word = (" " if rng.random() < 0.3 else "") + "".join(
                rng.choice(wide) for _ in range(rng.randint(1, 3))
            )
        else:
            data = bytes(rng.randint(0x80, 0xFF) for _ in range(rng.randint(1, 3)))
            word = None
            piece = "".join(to_char[b] for b in data)
            if piece not in vocab:
                vocab[piece] = len(vocab)
            continue
        piece = "".join(to_char[b] for b in word.encode())
        if piece not in vocab:
            vocab[piece] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(["<|endoftext|>", "<|im_start|>", "<|im_end|>"])
    tokenizer.add_tokens(
        [
            AddedToken(t, normalized=False)
            for t in ("<think>", "</think>", "<tool_call>", "</tool_call>")
        ]
    )
    return tokenizer


def bench_token_pipeline() -> None:
    with tempfile.TemporaryDirectory() as folder:
        model = generate(Path(folder) / "demo-tiny", "tiny")
        tokenizer = Tokenizer.from_file(str(model / "tokenizer.json"))
    corpus = (Path(generate.__code__.co_filename).parent / "corpus.txt").read_text()[:20_000]
    text = f"<think>{corpus[:4000]}</think>{corpus[4000:]}"
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    markers = Markers.probe(tokenizer)
    for label, stops in (
        ("no stop strings", []),
        ("4 stop strings", ["STOP", "\n\n\n", "###", "END"]),
    ):
        best = float("inf")
        for _ in range(5):
            pipeline = TokenPipeline(tokenizer, markers, stop_strings=stops)
            started = time.perf_counter()
            for token_id in ids:
                pipeline.push(token_id)
            pipeline.close()
            best = min(best, time.perf_counter() - started)
        print(
            f"TokenPipeline.push ({label:15}): {best / len(ids) * 1e6:6.2f} us/token, "
            f"{len(ids) / best:,.0f} tokens/s ({len(ids)} demo ids)"
        )


def bench_sampler() -> None:
    torch.set_num_threads(1)
    logits = torch.randn(LOGITS_WIDTH)
    cases = {
        "greedy": SamplingParams(temperature=0.0),
        "temperature 1": SamplingParams(seed=1),
        "top_p 0.9 + top_k 40": SamplingParams(seed=1, top_p=0.9, top_k=40),
        "penalties": SamplingParams(
            seed=1, presence_penalty=0.5, frequency_penalty=0.5, repetition_penalty=1.1
        ),
    }
    for label, params in cases.items():
        sampler = Sampler(params, LOGITS_WIDTH, prompt_ids=list(range(500)))
        generated: list[int] = []
        started = time.perf_counter()
        for _ in range(200):
            generated.append(sampler.sample(logits, generated))
        per = (time.perf_counter() - started) / 200
        print(f"Sampler.sample 152k logits ({label:20}): {per * 1e3:6.3f} ms/token")


def bench_constraint() -> None:
    torch.set_num_threads(1)
    started = time.perf_counter()
    tokenizer = synthetic_tokenizer(BASE_TOKENS)
    built = time.perf_counter() - started
    started = time.perf_counter()
    vocab = TokenVocab(tokenizer)
    print(f"synthetic vocabulary: {vocab.size:,} tokens (built in {built:.1f} s)")
    print(f"TokenVocab build: {time.perf_counter() - started:.2f} s (once per loaded model)")
    eos = tokenizer.token_to_id("<|im_end|>")
    tools = msgspec.convert(
        [{"type": "function", "function": {"name": "get_weather", "parameters": SCHEMA}}],
        list[Tool],
    )
    counters = {"slow": 0, "slow_s": 0.0, "slow_max": 0.0}
    original = Constraint.allowed_ids

    def counted(self):
        t0 = time.perf_counter()
        try:
            return original(self)
        finally:
            took = time.perf_counter() - t0
            counters["slow"] += 1
            counters["slow_s"] += took
            counters["slow_max"] = max(counters["slow_max"], took)

    constrain_module.Constraint.allowed_ids = counted
    per_token: list[float] = []
    tokens = forced = 0
    seeds = range(8)
    for params_label, temperature in (("temperature 1", 1.0), ("greedy", 0.0)):
        per_token.clear()
        tokens = forced = 0
        counters.update(slow=0, slow_s=0.0, slow_max=0.0)
        for seed in seeds:
            constraint = Constraint(tool_call_grammar(tools, "required"), vocab, [eos])
            sampler = ConstrainedSampler(
                Sampler(SamplingParams(temperature=temperature, seed=seed), LOGITS_WIDTH),
                constraint,
            )
            noise = torch.Generator().manual_seed(seed)
            ids: list[int] = []
            while not constraint.done:
                logits = torch.randn(LOGITS_WIDTH, generator=noise) * 3
                was_forced = constraint.forced() is not None
                t0 = time.perf_counter()
                ids.append(sampler.sample(logits, ids))
                per_token.append(time.perf_counter() - t0)
                forced += was_forced
            tokens += len(ids)
            arguments = json.loads(tokenizer.decode(ids, skip_special_tokens=True).split("\n")[1])[
                "arguments"
            ]
            assert set(SCHEMA["required"]) <= set(arguments)
        mean_ms = statistics.mean(per_token) * 1e3
        median_ms = statistics.median(per_token) * 1e3
        slow_ms = counters["slow_s"] / max(counters["slow"], 1) * 1e3
        print(
            f"constrained tool call, random logits, {params_label}: {len(seeds)} calls, "
            f"{tokens} tokens ({forced} forced)\n"
            f"    per token: mean {mean_ms:.2f} ms, median {median_ms:.2f} ms, "
            f"max {max(per_token) * 1e3:.0f} ms\n"
            f"    slow path (list every legal token): {counters['slow']} times, "
            f"mean {slow_ms:.0f} ms, max {counters['slow_max'] * 1e3:.0f} ms"
        )
    constrain_module.Constraint.allowed_ids = original


def main() -> None:
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, 1 thread")
    bench_token_pipeline()
    bench_sampler()
    bench_constraint()


if __name__ == "__main__":
    main()
