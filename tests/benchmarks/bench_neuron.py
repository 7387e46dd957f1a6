"""Decode tok/s of the engine in-process vs through a neuron's HTTP stream, side by side.

    .venv/bin/python tests/benchmarks/bench_neuron.py [--size small] [--tokens 400]
        [--rounds 3] [--threads 1]
    .venv/bin/python tests/benchmarks/bench_neuron.py --sweep [--size small] [--tokens 128]
        [--rounds 3] [--concurrency 1,2,4,8,16] [--batching continuous]

With ``--sweep`` it measures batching instead (see ``bench_batching.py``): concurrent
streams through a neuron next to the model's raw batched forward, and running streams'
inter-token latency while a long prompt is admitted.

In-process: the transformers engine and the token pipeline, driven in this process
exactly as a worker's engine thread drives them (no pipe, no HTTP). Through HTTP: a real
``cortex-neuron`` on loopback with the same model, thread count, prompt and sampling,
read as an OpenAI stream by httpx. Both runs sample with the same seed (so they produce
the same tokens) with the end tokens banned, so each generates exactly ``--tokens``.
Decode tok/s = (tokens - 1) / (time of the last token - time of the first); the ratio
HTTP / in-process is the cost of the daemon (target >= 0.95). Rounds alternate between
the two so background load hits both alike.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.neuron import start_neuron  # noqa: E402

from cortex.services.neuron.demo import generate  # noqa: E402

MESSAGES = [{"role": "user", "content": "Tell me about the fleet of neurons."}]


def request_body(model: str, tokens: int, no_eos: dict[str, float], stream: bool) -> dict:
    return {
        "model": model,
        "messages": MESSAGES,
        "max_tokens": tokens,
        "temperature": 1.0,
        "seed": 1234,  # varied tokens (steady text to time), identical on both paths
        "logit_bias": no_eos,
        "stream": stream,
    }


def in_process_rate(engine, factory, body: dict) -> tuple[float, int]:
    """Drive engine + pipeline like the worker's engine thread, minus the pipe."""
    job = factory.chat("bench", json.dumps(body).encode())
    engine.add(job.seq)
    first = last = None
    tokens = 0
    running = True
    while running:
        for output in engine.step():
            for token in output.token_ids:
                job.pipeline.push(token)
            if output.token_ids:
                now = time.perf_counter()
                first = first or now
                last = now
                tokens += len(output.token_ids)
            running = output.finished is None
    job.pipeline.close()
    return (tokens - 1) / (last - first), tokens


def http_rate(client: httpx.Client, body: dict) -> tuple[float, int]:
    first = last = None
    chunks = 0
    usage = None
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if data.get("usage"):
                usage = data["usage"]
            choices = data.get("choices") or []
            delta = choices[0]["delta"] if choices else {}
            # Text, reasoning or a tool call: any delta but the opening role chunk.
            if any(delta.get(k) for k in ("content", "reasoning_content", "tool_calls")):
                now = time.perf_counter()
                first = first or now
                last = now
                chunks += 1
    tokens = usage["completion_tokens"] if usage else chunks
    return (tokens - 1) / (last - first), tokens


def _rounds(rates: list[float]) -> str:
    return ", ".join(f"{r:.1f}" for r in rates)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "small"], default="small")
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sweep", action="store_true", help="the concurrency sweep instead")
    parser.add_argument("--concurrency", default="1,2,4,8,16")
    parser.add_argument("--batching", choices=["continuous", "round_robin"], default="continuous")
    parser.add_argument("--admit-prompt", type=int, default=2000)
    args = parser.parse_args()
    if args.sweep:
        from bench_batching import sweep

        return sweep(args)

    import torch
    from tokenizers import Tokenizer

    from cortex.services.neuron.engines.base import EngineOptions
    from cortex.services.neuron.engines.transformers_engine import TransformersEngine
    from cortex.services.neuron.worker.prepare import JobFactory
    from cortex.services.neuron.worker.runtime import make_sampler

    with tempfile.TemporaryDirectory(prefix="bench-neuron-") as tmp:
        models = Path(tmp) / "models"
        path = generate(models / f"demo-{args.size}", args.size)
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        no_eos = {str(tokenizer.token_to_id(t)): -100 for t in ("<|im_end|>", "<|endoftext|>")}

        engine = TransformersEngine(
            EngineOptions(path=str(path), devices=["cpu"], cpu_threads=args.threads),
            make_sampler,
        )
        caps = engine.load(lambda done, total: None)
        factory = JobFactory(str(path), caps.max_seq_len, caps.vocab_size)
        model_id = path.name

        with start_neuron(
            models, Path(tmp) / "neuron", settings={"cpu_threads": args.threads}
        ) as neuron:
            neuron.load(model_id)
            body = request_body(model_id, args.tokens, no_eos, stream=False)
            stream_body = {**body, "stream": True, "stream_options": {"include_usage": True}}
            direct, through = [], []
            with httpx.Client(base_url=neuron.url, timeout=600) as client:
                # Warm both paths once (first forward passes, allocator, connections).
                in_process_rate(engine, factory, {**body, "max_tokens": 16})
                http_rate(client, {**stream_body, "max_tokens": 16})
                for _ in range(args.rounds):
                    rate, n_direct = in_process_rate(engine, factory, body)
                    direct.append(rate)
                    rate, n_http = http_rate(client, stream_body)
                    through.append(rate)
                    assert n_direct == n_http == args.tokens, (n_direct, n_http)

    d, h = statistics.median(direct), statistics.median(through)
    paired = statistics.median(b / a for a, b in zip(direct, through, strict=True))
    print(
        f"model demo-{args.size}, {args.tokens} tokens x {args.rounds} rounds, "
        f"torch threads {args.threads} (torch {torch.__version__}, CPU)"
    )
    print(f"in-process engine : {d:8.1f} tok/s  (rounds: {_rounds(direct)})")
    print(f"neuron HTTP stream: {h:8.1f} tok/s  (rounds: {_rounds(through)})")
    print(f"ratio HTTP / in-process: {h / d:.3f} (medians), {paired:.3f} (median of paired rounds)")
    print("target >= 0.95")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
