"""An agent's conversation straight at a neuron: TTFT of later turns with the prefix cache.

    .venv/bin/python tests/benchmarks/bench_prefix_cache.py [--system-tokens 20000]
        [--turns 5] [--answer-tokens 32] [--threads 1]

Claude Code's shape: a long system prompt plus tool definitions, then turns that each
resend everything before, add the previous answer and a new user message. The model is
``demo-long`` (131072 positions, a tiny shape), loaded twice on one neuron: with a
prefix cache and without, and each turn goes to both (alternating which goes first).
TTFT is measured by the client, from sending the streaming request to its first delta.
Goal: TTFT of turns 2..N at most 0.1 of turn 1's, with the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.neuron import start_neuron  # noqa: E402

from cortex.services.neuron.demo import generate  # noqa: E402

PARAGRAPH = (
    "You are an interactive coding agent. Read files before editing them, keep changes "
    "small, run the tests that touch your change, and explain what you did in one short "
    "paragraph. Never invent file names; search the repository first. "
)
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name}: {PARAGRAPH}",
            "parameters": {
                "type": "object",
                "properties": {"path": {"type": "string"}, "text": {"type": "string"}},
                "required": ["path"],
            },
        },
    }
    for name in ("Bash", "Read", "Edit", "Write", "Grep", "Glob")
]
QUESTIONS = [
    "Where is the engine loop defined?",
    "Add a test for the prefix cache.",
    "Run the tests that touch it.",
    "Why did the second test fail?",
    "Fix it and commit.",
    "Summarise the change.",
]


def system_prompt(client: httpx.Client, model: str, tokens: int) -> str:
    """Text of about ``tokens`` tokens (counted by the neuron's tokenizer)."""
    counted = client.post("/tokenize", json={"model": model, "text": PARAGRAPH}).json()["count"]
    return PARAGRAPH * max(1, tokens // counted)


def turn(client: httpx.Client, model: str, messages: list, max_tokens: int) -> tuple[float, dict]:
    body = {
        "model": model,
        "messages": messages,
        "tools": TOOLS,
        "max_tokens": max_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    sent = time.perf_counter()
    first = None
    text = ""
    usage: dict = {}
    with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        for line in response.iter_lines():
            if not line.startswith("data: {"):
                continue
            data = json.loads(line[6:])
            usage = data.get("usage") or usage
            for choice in data.get("choices") or []:
                delta = choice["delta"]
                if any(delta.get(k) for k in ("content", "reasoning_content", "tool_calls")):
                    first = first or time.perf_counter()
                    text += delta.get("content") or ""
    assert first is not None, "no output"
    return (first - sent) * 1000, {**usage, "text": text}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--system-tokens", type=int, default=20000)
    parser.add_argument("--turns", type=int, default=5)
    parser.add_argument("--answer-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    print(f"load average {os.getloadavg()[0]:.1f} at start, torch threads {args.threads}")
    with tempfile.TemporaryDirectory(prefix="bench-prefix-") as tmp:
        models = Path(tmp) / "models"
        generate(models / "demo-long", "long")
        settings = {"cpu_threads": args.threads, "prefix_cache": "1GiB"}
        with (
            start_neuron(models, Path(tmp) / "neuron", settings=settings) as neuron,
            httpx.Client(base_url=neuron.url, timeout=1200) as client,
        ):
            neuron.load("demo-long", id="cached", max_seq_len=131072)
            neuron.load("demo-long", id="uncached", max_seq_len=131072, prefix_cache=0)
            system = system_prompt(client, "cached", args.system_tokens)
            conversations = {
                model: [{"role": "system", "content": system}] for model in ("cached", "uncached")
            }
            ttft: dict[str, list[float]] = {"cached": [], "uncached": []}
            print(
                f"{'turn':>4} {'prompt':>7} {'cached tokens':>14} {'TTFT cached ms':>15} "
                f"{'TTFT uncached ms':>17} {'same text':>10}"
            )
            for index in range(args.turns):
                order = ("cached", "uncached") if index % 2 == 0 else ("uncached", "cached")
                answers = {}
                for model in order:
                    messages = conversations[model]
                    messages.append({"role": "user", "content": QUESTIONS[index]})
                    ms, answers[model] = turn(client, model, messages, args.answer_tokens)
                    messages.append({"role": "assistant", "content": answers[model]["text"]})
                    ttft[model].append(ms)
                got = answers["cached"]
                print(
                    f"{index + 1:>4} {got['prompt_tokens']:>7} "
                    f"{got['prompt_tokens_details']['cached_tokens']:>14} "
                    f"{ttft['cached'][-1]:>15.1f} {ttft['uncached'][-1]:>17.1f} "
                    f"{got['text'] == answers['uncached']['text']!s:>10}"
                )
            status = neuron.loaded("cached")["prefix_cache"]
    first = ttft["cached"][0]
    later = ttft["cached"][1:]
    print(
        "TTFT of turns 2..N / turn 1, cached: "
        + ", ".join(f"{t / first:.3f}" for t in later)
        + f" (max {max(later) / first:.3f}; goal <= 0.1)"
    )
    print(
        "uncached for comparison: "
        + ", ".join(f"{t / ttft['uncached'][0]:.3f}" for t in ttft["uncached"][1:])
    )
    print(f"prefix cache after the run: {status}")
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
