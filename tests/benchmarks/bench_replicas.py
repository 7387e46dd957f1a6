"""A load ramp on a two-neuron demo fleet: when the second replica serves, and what it buys.

    .venv/bin/python tests/benchmarks/bench_replicas.py [--stage-s 8] [--max-streams 32]
        [--hold-s 20] [--max-tokens 48]

Two real CPU neurons (demo-tiny on each disk, one engine sequence budget each) and a
real gateway with ``replicas = { max = 2 }`` for demo-tiny and small windows
(``queue_depth = 4``, ``window_s = 2``, ``idle_s = 10``). demo-tiny starts loaded on
one neuron. Concurrent clients loop chat streams: 1, 2, 4, ... up to ``--max-streams``,
``--stage-s`` seconds a stage, then the top stage is held until the second replica
serves and ``--hold-s`` seconds more. Then every client stops.

Prints: when the scale-up was decided, when the replica was loaded and when it served
its first request (seconds from the start of the ramp and from the decision); TTFT p50
/ p99 and aggregate completion tok/s before and after the replica served (before:
requests that started in the top two stages and ended before the replica served;
after: requests that started after it served); and how long after the last request the
idle replica was unloaded.

On the 2-core development machine both neurons share the same two cores, so a second
replica adds queue capacity (more sequences at once), not compute: read the after
figures with that in mind.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

MODEL = "demo-tiny"


@dataclass
class Sample:
    started: float
    ttft: float | None
    ended: float
    tokens: int


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def one_stream(client: httpx.AsyncClient, index: int, max_tokens: int) -> Sample:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": f"Tell story {index} {time.time()}"}],
        "max_tokens": max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    started = time.perf_counter()
    ttft = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            event = json.loads(line[6:])
            if ttft is None and any(c.get("delta", {}).get("content") for c in event["choices"]):
                ttft = time.perf_counter() - started
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    return Sample(started, ttft, time.perf_counter(), tokens)


class Ramp:
    def __init__(self, url: str, max_tokens: int) -> None:
        self.url = url
        self.max_tokens = max_tokens
        self.samples: list[Sample] = []
        self.stop = asyncio.Event()
        self.tasks: list[asyncio.Task] = []

    def add(self, count: int) -> None:
        for _ in range(count):
            self.tasks.append(asyncio.create_task(self._client(len(self.tasks))))

    async def _client(self, index: int) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=600) as client:
            while not self.stop.is_set():
                try:
                    self.samples.append(await one_stream(client, index, self.max_tokens))
                except httpx.HTTPError:
                    await asyncio.sleep(0.1)

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


class Watch:
    """Polls the gateway and the second neuron; notes when things happen."""

    def __init__(self, gateway, neurons: dict[str, object]) -> None:
        self.gateway = gateway
        self.neurons = neurons
        self.first: str | None = None
        self.decided: float | None = None
        self.loaded: float | None = None
        self.served: float | None = None
        self.unloaded: float | None = None
        self.serving = asyncio.Event()
        self.gone = asyncio.Event()

    async def run(self) -> None:
        async with httpx.AsyncClient(base_url=self.gateway.url, timeout=10) as client:
            while True:
                now = time.perf_counter()
                placements = (await client.get("/fleet")).json()["placements"]
                mine = {p["neuron"]: p for p in placements if p["model"] == MODEL}
                other = next((n for n in self.neurons if n != self.first), None)
                if self.decided is None and other in mine:
                    self.decided = now
                if self.loaded is None and mine.get(other, {}).get("state") == "loaded":
                    self.loaded = now
                if self.served is None and self.loaded and mine.get(other, {}).get("in_flight"):
                    self.served = now
                    self.serving.set()
                if self.served and self.unloaded is None and other not in mine:
                    self.unloaded = now
                    self.gone.set()
                await asyncio.sleep(0.1)


def figures(samples: list[Sample], start: float, end: float) -> tuple[float, float, float, int]:
    inside = [s for s in samples if start <= s.started and s.ended <= end]
    ttfts = [s.ttft for s in inside if s.ttft is not None]
    tokens = sum(s.tokens for s in inside)
    span = max(end - start, 1e-9)
    return percentile(ttfts, 0.5), percentile(ttfts, 0.99), tokens / span, len(inside)


async def bench(args, gateway, neurons) -> None:
    loaded = gateway.post(f"/fleet/models/{MODEL}/load", json={"neuron": "a"})
    assert loaded.status_code == 200, loaded.text
    watch = Watch(gateway, neurons)
    watch.first = "a"
    watcher = asyncio.create_task(watch.run())
    ramp = Ramp(gateway.url, args.max_tokens)
    t0 = time.perf_counter()
    streams = 0
    stage_starts = [t0]
    level = 1
    while level <= args.max_streams:
        ramp.add(level - streams)
        streams = level
        stage_starts.append(time.perf_counter())
        print(f"  {stage_starts[-1] - t0:6.1f}s  {streams:3d} streams", flush=True)
        await asyncio.sleep(args.stage_s)
        level *= 2
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watch.serving.wait(), args.timeout_s)
    await asyncio.sleep(args.hold_s)
    top_ended = time.perf_counter()
    await ramp.close()
    last_request = max(s.ended for s in ramp.samples)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(watch.gone.wait(), args.timeout_s)
    watcher.cancel()

    def at(t: float | None) -> str:
        return "never" if t is None else f"{t - t0:6.1f}s"

    print()
    print(f"scale-up decided (replica placed) at   {at(watch.decided)}")
    print(f"second replica loaded at               {at(watch.loaded)}")
    print(f"second replica served its first at     {at(watch.served)}", end="")
    if watch.decided and watch.served:
        print(f"  ({watch.served - watch.decided:.1f}s after the decision)")
    else:
        print()
    split = watch.served or top_ended
    # Before: the top two stages (the pressure that asked for the replica) until it served.
    before = stage_starts[-2] if len(stage_starts) > 2 else t0
    rows = [("before", before, split), ("after", split, top_ended)]
    print(f"\n{streams // 2}-{streams} streams, max_tokens {args.max_tokens}:")
    print("          requests   TTFT p50    TTFT p99   aggregate tok/s")
    for name, start, end in rows:
        p50, p99, rate, count = figures(ramp.samples, start, end)
        print(f"  {name:7s} {count:8d} {p50 * 1000:9.0f} ms {p99 * 1000:9.0f} ms {rate:12.1f}")
    if watch.unloaded is not None:
        print(
            f"\nidle replica unloaded {watch.unloaded - last_request:.1f}s after the last "
            f"request ended (idle_s {args.idle_s:g})"
        )
    else:
        print("\nidle replica not unloaded within the timeout")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stage-s", type=float, default=8.0)
    parser.add_argument("--max-streams", type=int, default=32)
    parser.add_argument("--hold-s", type=float, default=20.0)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--idle-s", type=float, default=10.0)
    parser.add_argument("--timeout-s", type=float, default=300.0)
    args = parser.parse_args()

    from support.gateway import start_gateway
    from support.models import make_demo_models
    from support.neuron import start_neuron

    with tempfile.TemporaryDirectory(prefix="cortex-bench-replicas-") as tmp:
        root = Path(tmp)
        models = make_demo_models(root / "models")
        neuron_settings = {"memory_budget": "600MiB", "max_concurrency": 4}
        config = {
            "replicas": {
                "queue_depth": 4,
                "window_s": 2.0,
                "idle_s": args.idle_s,
                "interval_s": 0.25,
            }
        }
        profile = [{"id": MODEL, "replicas": {"max": 2}}]
        with (
            start_neuron(models.root, root / "a", settings={"name": "a", **neuron_settings}) as a,
            start_neuron(models.root, root / "b", settings={"name": "b", **neuron_settings}) as b,
            start_gateway(
                root / "gateway",
                neurons={"a": a.url, "b": b.url},
                models=profile,
                config=config,
            ) as gateway,
        ):
            gateway.wait_neurons_up()
            asyncio.run(bench(args, gateway, {"a": a, "b": b}))
            print("\nreplica decisions in the fleet log:")
            for entry in gateway.get("/fleet/logs").json():
                if entry["kind"] == "replicas":
                    print("  " + entry["message"])


if __name__ == "__main__":
    main()
