"""Batching through a neuron next to the model's raw batched forward, in one run.

Run through ``bench_neuron.py --sweep`` (see its docstring). For each concurrency c:

Each level alternates the two ``--rounds`` times; figures are medians, ``/raw`` the median
of the paired rounds' ratios.

- raw forward: the model's own transformers forward (sdpa attention, ``DynamicCache``)
  doing the streams' work in this process: one batched forward over c prompts as long
  as the streams' (their chat template's tokens), then ``--tokens`` forwards of one token
  per row; tok/s = c x tokens / the time of all of it (prefill included, as for the
  neuron).
- neuron: c streaming chat requests at once against a real ``cortex-neuron``, each
  generating exactly ``--tokens`` (end tokens banned); aggregate tok/s = all tokens /
  wall time from the first request sent to the last stream ended (prefill and TTFT
  included), inter-token gaps per stream (p50/p99 over all streams), TTFT p50.

Then admission: ``--admit-prompt`` prompt tokens sent while 8 streams run; their
inter-token gaps while the prompt is prefilled (p99) against their gaps before it (p50).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

from support.neuron import start_neuron  # noqa: E402

from cortex.services.neuron.demo import generate  # noqa: E402

MESSAGES = [{"role": "user", "content": "Tell me about the fleet of neurons."}]
ADMIT_STREAMS = 8


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def silent_tokens(tokenizer) -> list[int]:
    """Tokens banned from the streams: end tokens, and those that give no chunk alone.

    A byte of a multi-byte character shows no text until the rest comes, and a marker
    (``<think>``, ``<tool_call>``) opens reasoning or a held tool call; a stream sampling
    them sends no chunk for that step, so one chunk gap would span two or three tokens.
    Without them every token is one chunk, and chunk gaps are inter-token gaps.
    """
    silent = []
    for token in range(tokenizer.get_vocab_size()):
        text = tokenizer.decode([token], skip_special_tokens=False)
        if not text or "\ufffd" in text or tokenizer.id_to_token(token).startswith("<"):
            silent.append(token)
    return silent


def raw_forward_rate(model, batch: int, steps: int, context: int) -> float:
    """Aggregate tok/s of the model's own batched forward (no cortex code): ``batch``
    prompts of ``context`` tokens prefilled together, then ``steps`` decode forwards."""
    import torch
    from transformers import DynamicCache

    with torch.inference_mode():
        cache = DynamicCache()
        prompt = torch.randint(3, model.config.vocab_size, (batch, context))
        token = torch.full((batch, 1), 7)
        started = time.perf_counter()
        model(input_ids=prompt, cache=cache, use_cache=True, logits_to_keep=1)
        for _ in range(steps - 1):
            model(input_ids=token, cache=cache, use_cache=True)
        return batch * steps / (time.perf_counter() - started)


class Stream:
    """One streaming request on its own connection; records when each chunk arrived."""

    def __init__(self, url: str, body: dict) -> None:
        self.url = url
        self.body = body
        self.sent = 0.0
        self.times: list[float] = []
        self.tokens = 0
        self.prompt_tokens = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> Stream:
        self.thread.start()
        return self

    def _run(self) -> None:
        with contextlib.suppress(httpx.HTTPError):  # admission streams end at unload
            self._read()

    def _read(self) -> None:
        with httpx.Client(base_url=self.url, timeout=600) as client:
            self.sent = time.perf_counter()
            with client.stream("POST", "/v1/chat/completions", json=self.body) as response:
                response.raise_for_status()
                for line in response.iter_lines():
                    if not line.startswith("data: {"):
                        continue
                    data = json.loads(line[6:])
                    if data.get("usage"):
                        self.tokens = data["usage"]["completion_tokens"]
                        self.prompt_tokens = data["usage"]["prompt_tokens"]
                    choices = data.get("choices") or []
                    delta = choices[0]["delta"] if choices else {}
                    # Text, reasoning or a tool call: sampled text can open either.
                    if any(value for key, value in delta.items() if key != "role"):
                        self.times.append(time.perf_counter())

    def gaps(self) -> list[tuple[float, float]]:
        """(arrival time, gap to the previous chunk) for each chunk after the first."""
        return [(b, b - a) for a, b in zip(self.times, self.times[1:], strict=False)]


def run_streams(url: str, body: dict, count: int) -> dict[str, float]:
    started = time.perf_counter()
    streams = [Stream(url, body).start() for _ in range(count)]
    for stream in streams:
        stream.thread.join()
    wall = time.perf_counter() - started
    gaps = [gap for s in streams for _, gap in s.gaps()]
    tokens = sum(s.tokens for s in streams)
    assert tokens == count * body["max_tokens"], tokens
    return {
        "aggregate": tokens / wall,
        "itl_p50": percentile(gaps, 0.5) * 1000,
        "itl_p99": percentile(gaps, 0.99) * 1000,
        "ttft_p50": statistics.median(s.times[0] - s.sent for s in streams) * 1000,
        "prompt_tokens": streams[0].prompt_tokens,
    }


def admission(url: str, body: dict, prompt_ids: list[int]) -> dict[str, float]:
    """Running streams' gaps before and while a long prompt is prefilled."""
    streams = [Stream(url, {**body, "max_tokens": 4000}).start() for _ in range(ADMIT_STREAMS)]
    while min(len(s.times) for s in streams) < 40:
        time.sleep(0.01)
    load = os.getloadavg()[0]
    sent = time.perf_counter()
    with httpx.Client(base_url=url, timeout=600) as client:
        response = client.post(
            "/v1/completions",
            json={"model": body["model"], "prompt": prompt_ids, "max_tokens": 1},
        )
        response.raise_for_status()
    answered = time.perf_counter()
    time.sleep(0.5)
    before = [g for s in streams for t, g in s.gaps() if t < sent]
    during = [g for s in streams for t, g in s.gaps() if sent <= t <= answered]
    return {
        "p50_before": percentile(before, 0.5) * 1000,
        "p99_before": percentile(before, 0.99) * 1000,
        "p99_during": percentile(during, 0.99) * 1000,
        "p50_during": percentile(during, 0.5) * 1000,
        "admit_s": answered - sent,
        "gaps_during": len(during),
        "load": load,
        "streams": streams,  # type: ignore[dict-item]
    }


def sweep(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    levels = [int(c) for c in args.concurrency.split(",")]
    print(
        f"model demo-{args.size}, {args.tokens} tokens per stream, batching {args.batching}, "
        f"torch threads {args.threads} (torch {torch.__version__}, CPU), "
        f"load average {os.getloadavg()[0]:.1f} at start"
    )
    with tempfile.TemporaryDirectory(prefix="bench-batching-") as tmp:
        models = Path(tmp) / "models"
        path = generate(models / f"demo-{args.size}", args.size)
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
        no_eos = {str(token): -100 for token in silent_tokens(tokenizer)}
        settings = {
            "cpu_threads": args.threads,
            # The admitted prompt runs beside the streams, never queued behind them.
            "max_concurrency": max(max(levels), ADMIT_STREAMS + 1),
            "batching": args.batching,
            "prefix_cache": 0,
            "max_queue": 64,
        }
        with start_neuron(models, Path(tmp) / "neuron", settings=settings) as neuron:
            neuron.load(path.name)
            body = {
                "model": path.name,
                "messages": MESSAGES,
                "max_tokens": args.tokens,
                "temperature": 1.0,
                "seed": 1234,
                "logit_bias": no_eos,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
            warm = run_streams(neuron.url, {**body, "max_tokens": 8}, 2)
            print(
                f"{'c':>3} {'raw fwd tok/s':>14} {'neuron tok/s':>13} {'/raw':>6} {'/c=1':>6} "
                f"{'ITL p50 ms':>11} {'ITL p99 ms':>11} {'TTFT p50 ms':>12}"
            )
            from transformers import AutoModelForCausalLM

            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
            base = None
            for c in levels:
                # Alternate the two, so background load hits both alike; medians.
                raws, runs = [], []
                for _ in range(args.rounds):
                    context = int(warm["prompt_tokens"])
                    raws.append(raw_forward_rate(model, c, args.tokens, context))
                    runs.append(run_streams(neuron.url, body, c))
                raw = statistics.median(raws)
                paired = statistics.median(
                    r["aggregate"] / w for r, w in zip(runs, raws, strict=True)
                )
                got = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
                base = base or got["aggregate"]
                print(
                    f"{c:>3} {raw:>14.1f} {got['aggregate']:>13.1f} "
                    f"{paired:>6.2f} {got['aggregate'] / base:>6.2f} "
                    f"{got['itl_p50']:>11.1f} {got['itl_p99']:>11.1f} {got['ttft_p50']:>12.1f}"
                )
            vocab = tokenizer.get_vocab_size()
            prompt_ids = [3 + (i * 7919) % (vocab - 3) for i in range(args.admit_prompt)]
            admitted = admission(neuron.url, body, prompt_ids)
            print(
                f"admission (load average {admitted['load']:.1f}) "
                f"of a {args.admit_prompt}-token prompt beside {ADMIT_STREAMS} "
                f"streams: prefilled in {admitted['admit_s']:.2f} s; running streams' "
                f"inter-token p50 before {admitted['p50_before']:.1f} ms (p99 "
                f"{admitted['p99_before']:.1f}), while admitting p50 "
                f"{admitted['p50_during']:.1f} ms, p99 {admitted['p99_during']:.1f} ms "
                f"({admitted['gaps_during']} gaps): p99 during / p50 before = "
                f"{admitted['p99_during'] / admitted['p50_before']:.2f} (goal < 3), "
                f"/ p50 during = {admitted['p99_during'] / admitted['p50_during']:.2f}"
            )
            neuron.unload(path.name)  # ends the admission streams
            for stream in admitted["streams"]:
                stream.thread.join(timeout=30)
    print(f"load average {os.getloadavg()[0]:.1f} at the end")
    print("goals: c=8 aggregate >= 4x c=1 and >= 0.85x raw forward at batch 8")
    return 0
