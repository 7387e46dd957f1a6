"""How often continuous batching changes greedy outputs, in fp32 and in bf16.

    .venv/bin/python tests/benchmarks/batching_agreement.py [--size small] [--prompts 16]
        [--tokens 64]

Runs the same greedy chat requests through the transformers engine twice, in process:
all at once with ``batching = "continuous"`` and with ``round_robin`` (each sequence in
its own forward, as if alone), and counts the sequences whose tokens agree exactly, with
the first position where the others part. The CPU engine runs fp32; bf16 (what CUDA hosts
run for bf16 checkpoints) is forced here only to show its effect.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from cortex.services.neuron.demo import generate  # noqa: E402


def run(path: Path, batching: str, prompts: list[str], tokens: int) -> list[list[int]]:
    from cortex.services.neuron.engines.base import EngineOptions
    from cortex.services.neuron.engines.transformers_engine import TransformersEngine
    from cortex.services.neuron.worker.prepare import JobFactory
    from cortex.services.neuron.worker.runtime import make_sampler

    options = EngineOptions(
        path=str(path), devices=["cpu"], max_concurrency=len(prompts), batching=batching
    )
    engine = TransformersEngine(options, make_sampler)
    caps = engine.load(lambda done, total: None)
    factory = JobFactory(str(path), caps.max_seq_len, caps.vocab_size)
    jobs = []
    for index, text in enumerate(prompts):
        body = {
            "model": "m",
            "messages": [{"role": "user", "content": text}],
            "max_tokens": tokens,
            "temperature": 0,
        }
        jobs.append(factory.chat(f"r{index}", json.dumps(body).encode()))
        engine.add(jobs[-1].seq)
    running = len(jobs)
    while running:
        running -= sum(1 for out in engine.step() if out.finished)
    return [job.seq.generated for job in jobs]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "small"], default="small")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=64)
    args = parser.parse_args()

    import torch

    from cortex.services.neuron.engines import transformers_engine

    torch.set_num_threads(1)
    prompts = [f"Question {i}: what does neuron {i * 7} do?" + " Tell more." * i for i in range(16)]
    prompts = prompts[: args.prompts]
    with tempfile.TemporaryDirectory(prefix="batching-agreement-") as tmp:
        path = generate(Path(tmp) / f"demo-{args.size}", args.size)
        for dtype in (torch.float32, torch.bfloat16):
            transformers_engine.torch_dtype_for = lambda device, config, d=dtype: d
            alone = run(path, "round_robin", prompts, args.tokens)
            together = run(path, "continuous", prompts, args.tokens)
            same = sum(a == b for a, b in zip(alone, together, strict=True))
            parted = [
                next(i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
                for a, b in zip(alone, together, strict=True)
                if a != b and any(x != y for x, y in zip(a, b, strict=False))
            ]
            print(
                f"{str(dtype).removeprefix('torch.'):>8}: {same}/{len(prompts)} sequences "
                f"identical over {args.tokens} greedy tokens; first difference at "
                f"{sorted(parted) or 'none'}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
