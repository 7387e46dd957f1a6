"""Why the proxy has its own HTTP/1.1 client: its CPU per relayed stream next to httpx's.

    .venv/bin/python tests/benchmarks/bench_upstream_client.py [--streams 512] [--chunks 32]
        [--concurrency 32] [--rounds 3]

Both clients stream the same chat completions from bench_gateway's synthetic upstream
(a chunk every ``interval-ms``, as a model would send tokens) on uvloop, the gateway's loop, with
keep-alive connections: ``services/gateway/upstream.py``'s ``UpstreamPool`` (what the
proxy uses) and ``httpx.AsyncClient`` (what the gateway's control calls use), rounds
interleaved (httpx, own, httpx, own...) so the machine's drift hits both. The figure is
this process's CPU time per stream and per relayed piece, best round of each. Prints
figures; asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

import httpx
import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_gateway import MODEL, port_of, synthetic_upstream

from cortex.services.gateway.upstream import UpstreamPool

PATH = "/v1/chat/completions"
HEADERS = {"content-type": "application/json"}


def body(chunks: int, interval_ms: float) -> bytes:
    request = {
        "model": MODEL,
        "stream": True,
        "max_tokens": chunks,
        "bench_interval_ms": interval_ms,
        "messages": [{"role": "user", "content": "hi"}],
    }
    return json.dumps(request).encode()


async def own_client(url: str, data: bytes, streams: int, concurrency: int) -> tuple[float, int]:
    pool = UpstreamPool("127.0.0.1", port_of(url), connect_timeout=5, read_timeout=60)

    async def one() -> int:
        response = await pool.request("POST", PATH, HEADERS, data)
        pieces = 0
        async for _ in response.aiter_raw():
            pieces += 1
        await response.aclose()
        return pieces

    try:
        return await measure(one, streams, concurrency)
    finally:
        pool.close()


async def httpx_client(url: str, data: bytes, streams: int, concurrency: int) -> tuple[float, int]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def one() -> int:
            pieces = 0
            async with client.stream("POST", PATH, content=data, headers=HEADERS) as response:
                async for _ in response.aiter_raw():
                    pieces += 1
            return pieces

        return await measure(one, streams, concurrency)


async def measure(one, streams: int, concurrency: int) -> tuple[float, int]:
    await one()  # connect outside the measurement
    left = streams
    pieces = 0

    async def worker() -> None:
        nonlocal left, pieces
        while left > 0:
            left -= 1
            got = await one()
            pieces += got

    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.process_time() - started, pieces


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", type=int, default=512)
    parser.add_argument("--chunks", type=int, default=32)
    parser.add_argument("--interval-ms", type=float, default=20.0, help="between chunks")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    data = body(args.chunks, args.interval_ms)
    best: dict[str, tuple[float, int]] = {}
    with tempfile.TemporaryDirectory() as work, synthetic_upstream(Path(work)) as (url, _):
        for _ in range(args.rounds):
            for name, client in (("httpx", httpx_client), ("own", own_client)):
                cpu, pieces = uvloop.run(client(url, data, args.streams, args.concurrency))
                if name not in best or cpu < best[name][0]:
                    best[name] = (cpu, pieces)
    print(
        f"{args.streams} streams of {args.chunks} chunks {args.interval_ms:g} ms apart, "
        f"{args.concurrency} at a time, "
        f"best of {args.rounds} rounds"
    )
    for name in ("httpx", "own"):
        cpu, pieces = best[name]
        print(
            f"  {name:>5}: {cpu / args.streams * 1000:6.2f} ms CPU per stream, "
            f"{cpu / pieces * 1e6:6.1f} us per piece ({pieces / args.streams:.1f} pieces a stream)"
        )
    ratio = best["httpx"][0] / best["own"][0]
    print(f"  httpx / own CPU per stream: {ratio:.2f}")


if __name__ == "__main__":
    main()
