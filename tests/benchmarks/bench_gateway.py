"""What the gateway adds: latency and streaming throughput, direct vs through the gateway.

    .venv/bin/python tests/benchmarks/bench_gateway.py [--upstream synthetic|neuron]
        [--concurrency 1,64,256] [--chunks 32] [--interval-ms 20] [--rounds 2]

The same upstream is reached directly and through a real ``cortex-gateway`` subprocess,
interleaved round by round (direct, gateway, direct, gateway) so drift on a shared
machine hits both alike. For each concurrency it prints TTFT (request sent -> first
generated token) and full-stream time (-> last byte), p50 and p99, direct and through
the gateway, the added milliseconds and the ratio; then streaming throughput (chunks
per second with an unpaced upstream) and its ratio.

Upstreams:

* ``synthetic`` (default): :class:`BenchUpstream`, a minimal OpenAI-shaped SSE server
  written for this benchmark, run as its own process. It answers the neuron endpoints
  the gateway needs (``/health``, ``/status``, ``/events``) and streams ``chunks`` token
  chunks ``interval-ms`` apart (a steady "model"), so the only variance is the
  machine's. A real neuron's own variance (a CPU model sharing two cores with the
  client and the gateway) would swamp sub-millisecond differences.
* ``neuron``: a real ``cortex-neuron`` with demo-tiny loaded (chunks = max_tokens).

The load generator is a small HTTP/1.1 client on raw asyncio streams (keep-alive, one
connection per concurrent stream) so that the client's own cost stays small.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))

MODEL = "bench-model"
_FIRST_TOKEN = re.compile(rb'"content":"(?!")')
NO_EOS = {"2": -100}  # demo models' <|im_end|>: a real neuron streams every chunk asked for


# --------------------------------------------------------------------------- upstream


class BenchUpstream:
    """A minimal OpenAI-shaped SSE upstream that looks like a neuron to the gateway.

    Benchmark-only: it generates nothing; each chat completion streams a role chunk, then
    ``max_tokens`` one-token chunks ``bench_interval_ms`` apart (fields of the request
    body), a finish chunk with usage, and ``[DONE]``.
    """

    def __init__(self) -> None:
        from cortex.common.neuron import (
            Device,
            LoadedModel,
            ModelFile,
            NodeStatus,
            StatusEvent,
        )
        from cortex.common.sse import encode_json

        now = time.time()
        status = NodeStatus(
            name="bench",
            version="bench",
            started_at=now,
            backends=["transformers"],
            devices=[
                Device(
                    id="cpu",
                    kind="cpu",
                    name="bench",
                    memory_total=64 << 30,
                    memory_used=1 << 30,
                    memory_free=63 << 30,
                    budget=32 << 30,
                )
            ],
            available=[
                ModelFile(id=MODEL, path="/bench", format="safetensors", size_bytes=1 << 20)
            ],
            loaded=[
                LoadedModel(
                    id=MODEL,
                    state="loaded",
                    backend="transformers",
                    devices=["cpu"],
                    memory_bytes=1 << 30,
                    max_concurrency=1024,
                    loaded_at=now,
                )
            ],
        )
        import msgspec

        self.status_body = msgspec.json.encode(status)
        self.status_event = encode_json(StatusEvent(status=status), event="status")

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/v1/chat/completions":
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            await self._stream(json.loads(body), send)
        elif path in ("/status", "/health"):
            await self._json(send, self.status_body if path == "/status" else b'{"status":"ok"}')
        elif path == "/events":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )
            await send({"type": "http.response.body", "body": self.status_event, "more_body": True})
            with contextlib.suppress(Exception):
                while True:
                    await asyncio.sleep(10)
                    await send(
                        {"type": "http.response.body", "body": b": ping\n\n", "more_body": True}
                    )
        else:
            await self._json(send, b'{"error":{"message":"not found","type":"not_found"}}', 404)

    async def _json(self, send, body: bytes, status: int = 200) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", b"application/json")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _stream(self, request: dict, send) -> None:
        tokens = int(request.get("max_tokens") or 16)
        interval = float(request.get("bench_interval_ms") or 0) / 1000
        head = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":1,'
        head += f'"model":"{request.get("model", MODEL)}","choices":[{{"index":0,'.encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )
        role = head + b'"delta":{"role":"assistant","content":""},"finish_reason":null}]}\n\n'
        await send({"type": "http.response.body", "body": role, "more_body": True})
        token = head + b'"delta":{"content":" tok"},"finish_reason":null}]}\n\n'
        for i in range(tokens):
            if interval and i:
                await asyncio.sleep(interval)
            await send({"type": "http.response.body", "body": token, "more_body": True})
        count = f'"completion_tokens":{tokens},"total_tokens":{tokens + 8}'
        usage = '"usage":{"prompt_tokens":8,' + count + "}"
        final = head + b'"delta":{},"finish_reason":"length"}],' + usage.encode() + b"}\n\n"
        await send({"type": "http.response.body", "body": final, "more_body": True})
        await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


def serve_upstream(port: int) -> None:
    import uvicorn

    uvicorn.run(BenchUpstream(), host="127.0.0.1", port=port, log_level="warning", lifespan="off")


# --------------------------------------------------------------------------- client


@dataclass
class Sample:
    ttft: float
    total: float
    chunks: int


class Connection:
    """One keep-alive HTTP/1.1 connection that posts and reads chunked SSE answers."""

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()

    async def stream(self, body: bytes) -> Sample:
        if self.writer is None:
            await self.open()
        assert self.reader is not None and self.writer is not None
        request = (
            f"POST {self.path} HTTP/1.1\r\nhost: {self.host}\r\n"
            f"content-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n"
        ).encode() + body
        started = time.perf_counter()
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(f"upstream answered {head[:200]!r}")
        ttft = None
        chunks = 0
        while True:
            size_line = await self.reader.readline()
            size = int(size_line.strip(), 16)
            if size == 0:
                await self.reader.readline()
                break
            data = await self.reader.readexactly(size + 2)
            chunks += data.count(b"data:")
            if ttft is None and _FIRST_TOKEN.search(data):
                ttft = time.perf_counter() - started
        total = time.perf_counter() - started
        return Sample(ttft if ttft is not None else total, total, chunks)


@dataclass
class Round:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def chunks_per_s(self) -> float:
        return sum(s.chunks for s in self.samples) / self.seconds if self.seconds else 0.0


async def run_round(
    port: int, body: bytes, concurrency: int, requests: int, stagger_s: float = 0.0
) -> Round:
    """``requests`` streams over ``concurrency`` connections. Stream slots start
    ``stagger_s / concurrency`` apart, as independent clients would, instead of all
    at once: equal-length streams started together stay in lockstep, and every wave
    would arrive as one burst."""
    result = Round()
    remaining = requests
    connections = [
        Connection("127.0.0.1", port, "/v1/chat/completions") for _ in range(concurrency)
    ]
    await asyncio.gather(*(c.open() for c in connections))

    async def worker(slot: int, connection: Connection) -> None:
        nonlocal remaining
        await asyncio.sleep(stagger_s * slot / concurrency)
        while remaining > 0:
            remaining -= 1
            result.samples.append(await connection.stream(body))

    started = time.perf_counter()
    await asyncio.gather(*(worker(i, c) for i, c in enumerate(connections)))
    result.seconds = time.perf_counter() - started
    await asyncio.gather(*(c.close() for c in connections))
    return result


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


# --------------------------------------------------------------------------- fleet


@contextlib.contextmanager
def synthetic_upstream(work: Path):
    from support.ports import free_port

    port = free_port()
    log = (work / "upstream.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve-upstream", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", process)
        yield f"http://127.0.0.1:{port}", MODEL
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:  # an /events stream the gateway left open
            process.kill()
            process.wait(timeout=5)
        log.close()


@contextlib.contextmanager
def real_neuron(work: Path):
    from support.models import make_demo_models
    from support.neuron import start_neuron

    models = make_demo_models(work / "models")
    with start_neuron(models.root, work / "neuron", settings={"max_concurrency": 64}) as neuron:
        neuron.load("demo-tiny")
        yield neuron.url, "demo-tiny"


def wait_http(url: str, process: subprocess.Popen, timeout: float = 30) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: process exited with {process.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer in time")


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def summarize(label: str, rounds: list[Round]) -> dict[str, float]:
    samples = [s for r in rounds for s in r.samples]
    ttft = [s.ttft * 1000 for s in samples]
    total = [s.total * 1000 for s in samples]
    return {
        "n": len(samples),
        "ttft_p50": statistics.median(ttft),
        "ttft_p99": percentile(ttft, 99),
        "total_p50": statistics.median(total),
        "total_p99": percentile(total, 99),
        "chunks_per_s": statistics.median(r.chunks_per_s for r in rounds),
    }


def report_latency(concurrency: int, direct: dict, gateway: dict) -> None:
    print(f"\nconcurrency {concurrency}: {direct['n']} streams each way")
    print(f"  {'':18}{'direct':>10}{'gateway':>10}{'added':>10}{'ratio':>8}")
    for key, name in (
        ("ttft_p50", "TTFT p50 ms"),
        ("ttft_p99", "TTFT p99 ms"),
        ("total_p50", "stream p50 ms"),
        ("total_p99", "stream p99 ms"),
    ):
        d, g = direct[key], gateway[key]
        print(f"  {name:18}{d:10.2f}{g:10.2f}{g - d:+10.2f}{g / d:8.2f}")


async def main_async(args) -> None:
    from support.gateway import start_gateway

    with tempfile.TemporaryDirectory(prefix="bench-gateway-") as tmp:
        work = Path(tmp)
        upstream = synthetic_upstream(work) if args.upstream == "synthetic" else real_neuron(work)
        with (
            upstream as (upstream_url, model),
            start_gateway(
                work / "gateway",
                neurons={"bench": upstream_url},
                config={
                    "gateway": {"log_level": "warning"},
                    "health": {"interval_s": 5.0, "missed_beats": 3},
                },
            ) as gateway,
        ):
            gateway.wait_neurons_up()
            gateway.wait_for(lambda: gateway.placements(model))
            direct_port, gateway_port = port_of(upstream_url), port_of(gateway.url)
            print(
                f"upstream: {args.upstream} ({model}); {args.chunks} chunks "
                f"{args.interval_ms} ms apart; {os.cpu_count()} CPUs; "
                f"load average {os.getloadavg()[0]:.1f}"
            )
            paced = json.dumps(
                {
                    "model": model,
                    "messages": [{"role": "user", "content": "bench"}],
                    "max_tokens": args.chunks,
                    "stream": True,
                    "bench_interval_ms": args.interval_ms,
                    "logit_bias": NO_EOS,
                }
            ).encode()
            for port in (direct_port, gateway_port):  # warm both paths
                await run_round(port, paced, 4, 16)
            pid = gateway.process.pid
            for concurrency in args.concurrency:
                requests = max(args.requests, concurrency * 4)
                stagger = args.chunks * args.interval_ms / 1000
                direct, through, cpu = await compare(
                    direct_port,
                    gateway_port,
                    pid,
                    args.rounds,
                    paced,
                    concurrency,
                    requests,
                    stagger,
                )
                report_latency(
                    concurrency, summarize("direct", direct), summarize("gateway", through)
                )
                streams = sum(len(r.samples) for r in through)
                print(f"  gateway CPU: {cpu / streams * 1000:.2f} ms per stream")
            unpaced = json.dumps(
                {
                    "model": model,
                    "messages": [{"role": "user", "content": "bench"}],
                    "max_tokens": args.throughput_chunks,
                    "stream": True,
                    "logit_bias": NO_EOS,
                }
            ).encode()
            direct, through, cpu = await compare(
                direct_port, gateway_port, pid, args.rounds, unpaced, 64, 128, 0.0
            )
            d = statistics.median(r.chunks_per_s for r in direct)
            g = statistics.median(r.chunks_per_s for r in through)
            chunks = sum(s.chunks for r in through for s in r.samples)
            print(
                f"\nthroughput, 64 streams of {args.throughput_chunks} unpaced chunks: "
                f"direct {d:,.0f} chunks/s, gateway {g:,.0f} chunks/s, ratio {g / d:.2f}; "
                f"gateway CPU {cpu / chunks * 1e6:.1f} us per chunk"
            )


async def compare(direct_port, gateway_port, pid, rounds, body, concurrency, requests, stagger):
    """Rounds alternating direct and gateway; also the gateway's CPU seconds meanwhile."""
    direct: list[Round] = []
    through: list[Round] = []
    cpu = 0.0
    for _ in range(rounds):
        direct.append(await run_round(direct_port, body, concurrency, requests, stagger))
        before = cpu_seconds(pid)
        through.append(await run_round(gateway_port, body, concurrency, requests, stagger))
        cpu += cpu_seconds(pid) - before
    return direct, through, cpu


def cpu_seconds(pid: int) -> float:
    import psutil

    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--serve-upstream", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--upstream", choices=["synthetic", "neuron"], default="synthetic")
    parser.add_argument(
        "--concurrency", type=lambda s: [int(x) for x in s.split(",")], default=[1, 64, 256]
    )
    parser.add_argument(
        "--requests",
        type=int,
        default=48,
        help="streams per round at least (and 4 per stream slot)",
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunks", type=int, default=32, help="token chunks per stream")
    parser.add_argument(
        "--interval-ms", type=float, default=20.0, help="between chunks: 20 ms is 50 tokens/s"
    )
    parser.add_argument("--throughput-chunks", type=int, default=256)
    args = parser.parse_args()
    if args.serve_upstream:
        serve_upstream(args.serve_upstream)
        return
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
