"""Soak: N concurrent streams through the gateway for M minutes on the demo fleet.

    .venv/bin/python tests/benchmarks/bench_soak.py [--streams 64] [--minutes 10]
    .venv/bin/python tests/benchmarks/bench_soak.py --streams 16 --minutes 1   # short run

Starts the demo fleet (``cortex.services.demo_fleet``: neurons alpha and beta and a
gateway, on random high ports, in a temporary folder unless ``--dir``), loads demo-tiny,
then keeps ``--streams`` OpenAI chat streams going for ``--minutes``: each client sends
one streaming request after another. Every request asks for a known number of tokens
with the end tokens banned and a seed, and every stream is checked:

* exactly one chunk with a finish reason (``length``), ``[DONE]`` last, one usage chunk;
* one completion id for all its chunks; every event valid JSON;
* ``usage.completion_tokens`` equal to the tokens asked for, and the text received equal
  to the text of those tokens (the same seeded request, answered whole, before the soak),
  so a stream that lost tokens or got another stream's is caught.

A stream that breaks a check is *garbled*; one whose HTTP exchange failed or that ended
with an error event is *errored*; one that never finished (the client gave up after
``--stream-timeout``) is *lost*. It reports those counts, the RSS of the gateway, the
neurons and their model workers (mean over the first minute vs the last; a quarter of
the run each for runs under four minutes), their open file descriptors at the start
and the end, and ``in_flight`` / ``queued`` at the gateway and the neurons after the
soak. Goals: 0 lost or garbled, RSS growth under 5 %, descriptors flat.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from cortex.services import demo_fleet

MODEL = "demo-tiny"
NO_EOS = {"0": -100, "2": -100}  # the demo models' end tokens
PROMPT = [{"role": "user", "content": "Tell me about the fleet."}]
SEEDS = list(range(1, 9))
SAMPLE_EVERY_S = 2.0


@dataclass
class Counts:
    ok: int = 0
    errored: int = 0
    garbled: int = 0
    lost: int = 0
    tokens: int = 0
    problems: list[str] = field(default_factory=list)

    def note(self, kind: str, detail: str) -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if len(self.problems) < 10:
            self.problems.append(f"{kind}: {detail}")


def body_for(seed: int, stream: bool) -> dict:
    return {
        "model": MODEL,
        "messages": PROMPT,
        "max_tokens": 12 + 4 * seed,
        "seed": seed,
        "temperature": 0.8,
        "logit_bias": NO_EOS,
        "stream": stream,
        **({"stream_options": {"include_usage": True}} if stream else {}),
    }


async def references(client: httpx.AsyncClient) -> dict[int, str]:
    """The text each seeded request produces, answered whole."""
    texts = {}
    for seed in SEEDS:
        response = await client.post("/v1/chat/completions", json=body_for(seed, stream=False))
        response.raise_for_status()
        texts[seed] = response.json()["choices"][0]["message"]["content"]
    return texts


def check_stream(events: list[str], seed: int, reference: str) -> str | None:
    """What is wrong with one finished stream (None when nothing)."""
    if not events or events[-1] != "[DONE]":
        return "no [DONE] at the end"
    chunks = [json.loads(event) for event in events[:-1]]
    if any("error" in chunk for chunk in chunks):
        return "error event"
    if len({chunk["id"] for chunk in chunks}) != 1:
        return "chunks of several completions in one stream"
    finishes = [
        c["finish_reason"] for chunk in chunks for c in chunk["choices"] if c.get("finish_reason")
    ]
    if finishes != ["length"]:
        return f"finish reasons {finishes}"
    usages = [chunk["usage"] for chunk in chunks if chunk.get("usage")]
    if len(usages) != 1:
        return f"{len(usages)} usage chunks"
    asked = body_for(seed, stream=True)["max_tokens"]
    if usages[0]["completion_tokens"] != asked:
        return f"usage {usages[0]['completion_tokens']} tokens, asked for {asked}"
    text = "".join(c["delta"].get("content") or "" for chunk in chunks for c in chunk["choices"])
    if text != reference:
        return f"text differs from the seed's reference ({len(text)} vs {len(reference)} chars)"
    return None


async def one_stream(
    client: httpx.AsyncClient, seed: int, reference: str, counts: Counts, limit_s: float
) -> None:
    events: list[str] = []

    async def read() -> int:
        async with client.stream(
            "POST", "/v1/chat/completions", json=body_for(seed, stream=True)
        ) as response:
            if response.status_code != 200:
                await response.aread()
                return response.status_code
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    events.append(line[6:])
            return 200

    try:
        status = await asyncio.wait_for(read(), limit_s)
    except TimeoutError:
        counts.note("lost", f"seed {seed}: no end within {limit_s:.0f}s ({len(events)} events)")
        return
    except httpx.HTTPError as exc:
        counts.note("errored", f"seed {seed}: {type(exc).__name__}: {exc}")
        return
    if status != 200:
        counts.note("errored", f"seed {seed}: HTTP {status}")
        return
    try:
        problem = check_stream(events, seed, reference)
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        problem = f"unreadable event ({exc})"
    if problem == "error event":
        counts.note("errored", f"seed {seed}: {events[-2][:200]}")
    elif problem is not None:
        counts.note("garbled", f"seed {seed}: {problem}")
    else:
        counts.ok += 1
        counts.tokens += body_for(seed, stream=True)["max_tokens"]


async def client_loop(client, refs, counts, until: float, limit_s: float, rng) -> None:
    while time.monotonic() < until:
        seed = rng.choice(SEEDS)
        await one_stream(client, seed, refs[seed], counts, limit_s)


# --------------------------------------------------------------------------- processes


@dataclass
class Sample:
    at: float
    rss: dict[str, int]
    fds: dict[str, int]


def groups(fleet: demo_fleet.Fleet) -> dict[str, list[psutil.Process]]:
    found: dict[str, list[psutil.Process]] = {"gateway": [], "neurons": [], "workers": []}
    for name, popen in fleet.processes.items():
        process = psutil.Process(popen.pid)
        if name == "gateway":
            found["gateway"].append(process)
        else:
            found["neurons"].append(process)
            found["workers"].extend(process.children(recursive=True))
    return found


def sample(fleet: demo_fleet.Fleet, started: float) -> Sample:
    rss: dict[str, int] = {}
    fds: dict[str, int] = {}
    for group, processes in groups(fleet).items():
        rss[group] = fds[group] = 0
        for process in processes:
            try:
                rss[group] += process.memory_info().rss
                fds[group] += process.num_fds()
            except psutil.NoSuchProcess:
                pass
    return Sample(time.monotonic() - started, rss, fds)


async def sampler(fleet, started: float, until: float, samples: list[Sample]) -> None:
    while time.monotonic() < until:
        samples.append(sample(fleet, started))
        await asyncio.sleep(SAMPLE_EVERY_S)


def outstanding(fleet: demo_fleet.Fleet) -> dict[str, int]:
    with httpx.Client(timeout=10) as client:
        placements = client.get(fleet.gateway_url + "/fleet").json()["placements"]
        loaded = []
        for index in range(2):
            loaded += client.get(fleet.neuron_url(index) + "/status").json()["loaded"]
    return {
        "gateway in_flight": sum(p.get("in_flight", 0) for p in placements),
        "gateway queued": sum(p.get("queued", 0) for p in placements),
        "neuron in_flight": sum(m.get("in_flight", 0) for m in loaded),
        "neuron queued": sum(m.get("queued", 0) for m in loaded),
    }


# --------------------------------------------------------------------------- report


def report(args, counts: Counts, samples: list[Sample], after: dict[str, int], seconds: float):
    total = counts.ok + counts.errored + counts.garbled + counts.lost
    print(f"\nsoak: {args.streams} streams x {args.minutes:g} min ({seconds:.0f} s)")
    print(f"  streams finished   {total}  ({total / seconds:.1f}/s)")
    print(f"  ok                 {counts.ok}  ({counts.tokens / seconds:.0f} tokens/s checked)")
    print(f"  lost               {counts.lost}")
    print(f"  garbled            {counts.garbled}")
    print(f"  errored            {counts.errored}")
    for problem in counts.problems:
        print(f"    {problem}")
    window = min(60.0, seconds / 4)
    first = [s for s in samples if s.at <= window]
    last = [s for s in samples if s.at >= seconds - window]
    print(f"  RSS (MiB), mean of the first vs the last {window:.0f} s:")
    for group in ("gateway", "neurons", "workers"):
        a = statistics.mean(s.rss[group] for s in first) / 2**20
        b = statistics.mean(s.rss[group] for s in last) / 2**20
        print(f"    {group:<8} {a:8.1f} -> {b:8.1f}  ({(b - a) / a * 100:+.1f} %)")
    print(f"  open file descriptors, most in the first vs the last {window:.0f} s:")
    for group in ("gateway", "neurons", "workers"):
        a = max(s.fds[group] for s in first)
        b = max(s.fds[group] for s in last)
        print(f"    {group:<8} {a:5d} -> {b:5d}")
    print("  after the soak: " + ", ".join(f"{k} {v}" for k, v in after.items()))


async def soak(args, fleet: demo_fleet.Fleet) -> None:
    limits = httpx.Limits(max_connections=args.streams + 4, max_keepalive_connections=args.streams)
    timeout = httpx.Timeout(args.stream_timeout, connect=10)
    async with httpx.AsyncClient(
        base_url=fleet.gateway_url, limits=limits, timeout=timeout
    ) as client:
        refs = await references(client)
        counts = Counts()
        samples: list[Sample] = []
        started = time.monotonic()
        until = started + args.minutes * 60
        rng = random.Random(7)
        await asyncio.gather(
            sampler(fleet, started, until, samples),
            *(
                client_loop(client, refs, counts, until, args.stream_timeout, rng)
                for _ in range(args.streams)
            ),
        )
        seconds = time.monotonic() - started
    samples.append(sample(fleet, started))
    await asyncio.sleep(1.0)  # the last releases reach the scheduler
    report(args, counts, samples, outstanding(fleet), seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--stream-timeout", type=float, default=120.0)
    parser.add_argument("--dir", type=Path, help="fleet folder (default: a temporary one)")
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="cortex-soak-"))
    ports = random.sample(range(40000, 60000), 4)
    fleet = demo_fleet.Fleet(
        root=root.resolve(),
        gateway_port=ports[0],
        metrics_port=ports[1],
        neuron_ports=(ports[2], ports[3]),
        budget="3GiB",
    )
    demo_fleet.check_ports_free(fleet)
    configs = demo_fleet.prepare(fleet)
    try:
        demo_fleet.start(fleet, configs)
        demo_fleet.wait_ready(fleet)
        demo_fleet.warm_up(fleet)
        asyncio.run(soak(args, fleet))
    finally:
        demo_fleet.stop(fleet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
