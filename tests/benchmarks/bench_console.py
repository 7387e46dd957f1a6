"""Benchmark the console: render cost of a big live fleet, and ``--json status`` wall time.

    .venv/bin/python tests/benchmarks/bench_console.py [--seconds 60] [--runs 20]

1. Render cost: the real app, headless at 200x60, fed a synthetic fleet of 32 neurons x
   8 GPUs x 4 models where every neuron and every placement changes once a second (160
   events/s, decoded from SSE JSON exactly as the stream worker does). Prints CPU
   seconds per minute of wall time (process CPU, app + feeder), the same for an idle
   app showing the same fleet, the flush cost (mean / p99 / max) and the event loop's
   lag (how late a 50 ms heartbeat fires: what a key press would wait at worst).
2. ``cortex-console --json status`` wall time (fresh process each run, as a script
   would call it) against a real gateway with one real CPU neuron, started here, run
   by run in two ways: with the bytecode cached (as a pip install leaves it; here in a
   temporary ``PYTHONPYCACHEPREFIX``) and with ``PYTHONDONTWRITEBYTECODE=1`` (cortex's
   own modules compiled from source on every start, as in a checkout nobody may write
   ``__pycache__`` to), next to a bare interpreter start. Skipped, saying why, when the
   gateway or neuron launchers are not available.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import msgspec

TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(TESTS), str(TESTS / "console")]

from fleets import synthetic_fleet  # noqa: E402

from cortex.common.fleet import NeuronUpdate, PlacementUpdate, SnapshotEvent  # noqa: E402
from cortex.console.client import decode_event  # noqa: E402
from cortex.console.state import FleetState  # noqa: E402

SIZE = (200, 60)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def encoded_ticks(count: int, neurons: int, gpus: int, models: int) -> list[list[tuple[str, str]]]:
    """Per tick, every neuron and placement update as (event name, JSON data)."""
    ticks = []
    for tick in range(1, count + 1):
        snapshot = synthetic_fleet(neurons, gpus, models, tick=tick)
        events = [NeuronUpdate(n) for n in snapshot.neurons]
        events += [PlacementUpdate(p) for p in snapshot.placements]
        ticks.append(
            [(type(e).__struct_config__.tag, msgspec.json.encode(e).decode()) for e in events]
        )
    return ticks


async def measure_render(seconds: float, live: bool) -> dict[str, float]:
    from cortex.console.app import CortexConsole

    state = FleetState()
    state.apply(SnapshotEvent(synthetic_fleet(32, 8, 4)))
    state.connected(time.time())
    app = CortexConsole(gateway="http://bench.invalid:31313", state=state, follow=False)
    flush_times: list[float] = []
    original_flush = app.flush

    def timed_flush() -> None:
        start = time.perf_counter()
        original_flush()
        flush_times.append(time.perf_counter() - start)

    app.flush = timed_flush  # type: ignore[method-assign]
    ticks = encoded_ticks(int(seconds) + 2, 32, 8, 4) if live else []
    lags: list[float] = []
    events = 0

    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause(1.0)  # first full render done before measuring
        flush_times.clear()

        async def feed() -> None:
            nonlocal events
            for tick in ticks:
                for name, data in tick:
                    state.apply(decode_event(name, data))
                    events += 1
                await asyncio.sleep(1.0)

        async def heartbeat() -> None:
            period = 0.05
            while True:
                start = time.perf_counter()
                await asyncio.sleep(period)
                lags.append(time.perf_counter() - start - period)

        feeder = asyncio.create_task(feed())
        beat = asyncio.create_task(heartbeat())
        cpu0, wall0 = time.process_time(), time.perf_counter()
        await asyncio.sleep(seconds)
        cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
        feeder.cancel()
        beat.cancel()
        rows = len(app.nodes.row_keys) + len(app.models.row_keys)
    return {
        "cpu_s_per_min": cpu / wall * 60,
        "wall_s": wall,
        "events": events,
        "rows": rows,
        "flushes": len(flush_times),
        "flush_mean_ms": statistics.fmean(flush_times) * 1000 if flush_times else 0.0,
        "flush_p99_ms": percentile(flush_times, 0.99) * 1000,
        "flush_max_ms": max(flush_times, default=0.0) * 1000,
        "lag_p99_ms": percentile(lags, 0.99) * 1000,
        "lag_max_ms": max(lags, default=0.0) * 1000,
    }


def measure_json_status(runs: int) -> dict[str, float] | str:
    try:
        from support.gateway import start_gateway
        from support.models import make_demo_models
        from support.neuron import start_neuron
    except ImportError as exc:
        return f"skipped: a launcher is missing ({exc})"
    with tempfile.TemporaryDirectory(prefix="bench-console-") as tmp:
        root = Path(tmp)
        models = make_demo_models(root / "models")
        cached = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        cached["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
        uncached = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        uncached.pop("PYTHONPYCACHEPREFIX", None)
        with (
            start_neuron(models.root, root / "neuron") as neuron,
            start_gateway(root / "gateway", neurons={"local": neuron.url}) as gateway,
        ):
            gateway.wait_neurons_up()
            gateway.post("/fleet/models/demo-tiny/load", json={}).raise_for_status()
            command = [
                str(Path(sys.executable).parent / "cortex-console"),
                "--json",
                "status",
                "--gateway",
                gateway.url,
            ]
            for env in (cached, uncached):  # warm the disk cache, write the bytecode
                subprocess.run(command, capture_output=True, check=True, env=env)
            bare = [sys.executable, "-c", "pass"]  # the interpreter's own start, same venv
            times: dict[str, list[float]] = {"cached": [], "uncached": [], "python": []}
            for _ in range(runs):
                for name, argv, env in (
                    ("cached", command, cached),
                    ("uncached", command, uncached),
                    ("python", bare, cached),
                ):
                    start = time.perf_counter()
                    subprocess.run(argv, capture_output=True, check=True, env=env)
                    times[name].append(time.perf_counter() - start)
    result: dict[str, float] = {"runs": runs}
    for name in ("cached", "uncached"):
        result[f"{name}_min_ms"] = min(times[name]) * 1000
        result[f"{name}_p50_ms"] = statistics.median(times[name]) * 1000
        result[f"{name}_p90_ms"] = percentile(times[name], 0.9) * 1000
        result[f"{name}_max_ms"] = max(times[name]) * 1000
    result["python_p50_ms"] = statistics.median(times["python"]) * 1000
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="wall time per render run")
    parser.add_argument("--runs", type=int, default=20, help="--json status invocations")
    parser.add_argument("--skip-json", action="store_true", help="only the render cost")
    parser.add_argument("--skip-render", action="store_true", help="only --json status")
    args = parser.parse_args()

    if not args.skip_render:
        print(f"console render cost: 32 neurons x 8 GPUs x 4 models, {SIZE[0]}x{SIZE[1]}, headless")
    for live in () if args.skip_render else (False, True):
        r = asyncio.run(measure_render(args.seconds, live))
        label = "live, 160 events/s" if live else "idle (same fleet)"
        print(
            f"  {label:<19} {r['cpu_s_per_min']:6.2f} CPU s/min over {r['wall_s']:.0f} s wall;"
            f" {r['rows']} rows, {r['events']} events, {r['flushes']} flushes;"
            f" flush mean {r['flush_mean_ms']:.1f} ms, p99 {r['flush_p99_ms']:.1f} ms,"
            f" max {r['flush_max_ms']:.1f} ms; loop lag p99 {r['lag_p99_ms']:.1f} ms,"
            f" max {r['lag_max_ms']:.1f} ms"
        )
    if not args.skip_json:
        result = measure_json_status(args.runs)
        if isinstance(result, str):
            print(f"--json status wall time: {result}")
        else:
            print(
                f"--json status wall time ({result['runs']} fresh processes each, local gateway):"
            )
            for name, label in (
                ("cached", "bytecode cached"),
                ("uncached", "PYTHONDONTWRITEBYTECODE=1"),
            ):
                print(
                    f"  {label:<26} min {result[f'{name}_min_ms']:.0f} ms,"
                    f" p50 {result[f'{name}_p50_ms']:.0f} ms,"
                    f" p90 {result[f'{name}_p90_ms']:.0f} ms,"
                    f" max {result[f'{name}_max_ms']:.0f} ms"
                )
            print(f"  a bare `python -c pass`    p50 {result['python_p50_ms']:.0f} ms")


if __name__ == "__main__":
    main()
