"""Deterministic fleets for the console's tests and benchmark (no gateway involved).

``small_fleet`` is the hand-written fleet the snapshot tests show; ``synthetic_fleet``
builds the N neurons x G GPUs x M models fleet the benchmark drives.
"""

from __future__ import annotations

from cortex.common.fleet import (
    ActiveRequest,
    CatalogueEntry,
    FleetNeuron,
    FleetSnapshot,
    LogEntry,
    Placement,
    ReplicaStatus,
    RequestsUpdate,
)
from cortex.common.neuron import Device, LoadProgress, PrefixCacheStatus

GiB = 1024**3
MiB = 1024**2
T0 = 1_760_000_000.0  # a fixed "now" for deterministic tests


def small_fleet() -> FleetSnapshot:
    """Three neurons (two GPUs, one CPU, one down), three placements (one loading)."""
    alpha_gpus = [
        Device(
            id=f"cuda:{i}",
            kind="cuda",
            name="NVIDIA RTX 4090",
            memory_total=24 * GiB,
            memory_used=used,
            memory_free=24 * GiB - used,
            index=i,
            utilization=util,
            temperature_c=temp,
            power_w=power,
            power_limit_w=450.0,
        )
        for i, (used, util, temp, power) in enumerate(
            [(int(10.5 * GiB), 35.0, 61.0, 180.0), (int(22.8 * GiB), 97.0, 86.0, 430.0)]
        )
    ]
    neurons = [
        FleetNeuron(
            name="alpha",
            endpoint="http://10.0.0.1:13131",
            up=True,
            devices=alpha_gpus,
            backends=["exllamav2", "transformers"],
            version="0.1.0",
            last_seen=T0 - 1,
        ),
        FleetNeuron(
            name="beta",
            endpoint="http://10.0.0.2:13131",
            up=True,
            devices=[
                Device(
                    id="cpu",
                    kind="cpu",
                    name="AMD EPYC 7443P",
                    memory_total=64 * GiB,
                    memory_used=int(51.5 * GiB),
                    memory_free=int(12.5 * GiB),
                )
            ],
            backends=["transformers"],
            version="0.1.0",
            last_seen=T0 - 1,
        ),
        FleetNeuron(
            name="gamma",
            endpoint="http://10.0.0.3:13131",
            up=False,
            error="connection refused",
            last_seen=T0 - 95,
        ),
    ]
    placements = [
        Placement(
            model="qwen2.5-coder-7b",
            neuron="alpha",
            state="loaded",
            devices=["cuda:0"],
            backend="exllamav2",
            pinned=True,
            memory_bytes=int(6.2 * GiB),
            max_seq_len=32768,
            in_flight=2,
            queued=1,
            tokens_per_s=84.6,
            ttft_ms=118.0,
            requests_total=1532,
            completion_tokens_total=401_200,
            loaded_at=T0 - 3600,
            last_used_at=T0 - 2,
            prefix_cache=PrefixCacheStatus(
                budget_bytes=2 * GiB,
                size_bytes=int(1.25 * GiB),
                entries=6,
                lookups=40,
                hits=31,
                cached_tokens=612_480,
            ),
        ),
        Placement(
            model="llama-3.1-8b",
            neuron="alpha",
            state="loading",
            devices=["cuda:1"],
            backend="exllamav2",
            progress=LoadProgress(stage="loading", done=13, total=32),
        ),
        Placement(
            model="demo-tiny",
            neuron="beta",
            state="loaded",
            devices=["cpu"],
            backend="transformers",
            memory_bytes=310 * MiB,
            max_seq_len=2048,
            tokens_per_s=12.5,
            ttft_ms=45.0,
            requests_total=7,
            completion_tokens_total=900,
            loaded_at=T0 - 300,
            last_used_at=T0 - 30,
        ),
    ]
    catalogue = [
        CatalogueEntry(
            id="demo-tiny",
            available_on=["alpha", "beta"],
            loaded_on=["beta"],
            memory_estimate=350 * MiB,
        ),
        CatalogueEntry(
            id="llama-3.1-8b",
            available_on=["alpha"],
            loaded_on=[],
            memory_estimate=9 * GiB,
            profile=True,
        ),
        CatalogueEntry(
            id="qwen2.5-coder-7b",
            available_on=["alpha"],
            loaded_on=["alpha"],
            pinned=True,
            pin_source="config",
            priority=10,
            memory_estimate=7 * GiB,
            profile=True,
            replicas=ReplicaStatus(
                min=1, max=2, source="config", wanted=2, actual=1, queue_depth=5, queue_wait_s=6.5
            ),
        ),
    ]
    return FleetSnapshot(time=T0, neurons=neurons, placements=placements, catalogue=catalogue)


def small_fleet_log() -> list[LogEntry]:
    return [
        LogEntry(time=T0 - 300, kind="neuron_up", message="neuron beta is up", neuron="beta"),
        LogEntry(
            time=T0 - 290,
            kind="load",
            message="loaded demo-tiny on beta in 3.1 s",
            model="demo-tiny",
            neuron="beta",
        ),
        LogEntry(
            time=T0 - 120,
            kind="evict",
            level="warning",
            message="evicted mistral-7b from alpha to make room for llama-3.1-8b",
            model="mistral-7b",
            neuron="alpha",
            reason="lru",
        ),
        LogEntry(
            time=T0 - 95,
            kind="neuron_down",
            level="error",
            message="neuron gamma is down: connection refused",
            neuron="gamma",
        ),
        LogEntry(
            time=T0 - 5,
            kind="load",
            message="loading llama-3.1-8b on alpha (cuda:1)",
            model="llama-3.1-8b",
            neuron="alpha",
        ),
    ]


def small_fleet_requests() -> RequestsUpdate:
    """What the gateway serves at T0: two streams on qwen, one queued for llama."""
    return RequestsUpdate(
        requests=[
            ActiveRequest(
                id="req-claude-code-1",
                model="qwen2.5-coder-7b",
                endpoint="messages",
                age_s=74.2,
                neuron="alpha",
                ttft_ms=812.0,
                tokens=3120,
                tokens_per_s=42.3,
            ),
            ActiveRequest(
                id="req-codex-7",
                model="qwen2.5-coder-7b",
                endpoint="responses",
                age_s=3.4,
                neuron="alpha",
                ttft_ms=95.0,
                tokens=120,
                tokens_per_s=41.9,
            ),
            ActiveRequest(
                id="req-4f2a",
                model="llama-3.1-8b",
                endpoint="chat",
                age_s=1.1,
            ),
        ],
        total=3,
    )


# Tok/s history of the two loaded placements, one sample a second.
SMALL_FLEET_HISTORY = {
    ("qwen2.5-coder-7b", "alpha"): [0, 0, 12, 40, 71, 88, 90, 86, 60, 84, 91, 84.6],
    ("demo-tiny", "beta"): [0, 3, 8, 12, 12, 11, 0, 0, 9, 13, 12, 12.5],
}


def synthetic_fleet(
    neurons: int = 32, gpus: int = 8, models_per_neuron: int = 4, tick: int = 0
) -> FleetSnapshot:
    """``neurons`` x ``gpus`` GPUs with ``models_per_neuron`` placements each.

    ``tick`` moves every figure, so consecutive ticks differ everywhere (the worst case
    for the console: every neuron, device and placement changed).
    """
    fleet_neurons = []
    placements = []
    catalogue: dict[str, CatalogueEntry] = {}
    for n in range(neurons):
        name = f"node{n:02d}"
        devices = []
        for g in range(gpus):
            phase = (n * 7 + g * 3 + tick) % 100
            used = int((0.2 + 0.75 * phase / 100) * 80 * GiB)
            devices.append(
                Device(
                    id=f"cuda:{g}",
                    kind="cuda",
                    name="NVIDIA H100 80GB HBM3",
                    memory_total=80 * GiB,
                    memory_used=used,
                    memory_free=80 * GiB - used,
                    index=g,
                    utilization=float(phase),
                    temperature_c=40.0 + phase * 0.5,
                )
            )
        fleet_neurons.append(
            FleetNeuron(
                name=name,
                endpoint=f"http://10.1.{n // 256}.{n % 256}:13131",
                up=True,
                devices=devices,
                backends=["exllamav2", "transformers"],
                version="0.1.0",
                last_seen=T0 + tick,
            )
        )
        for m in range(models_per_neuron):
            model = f"model-{m:02d}"
            phase = (n * 5 + m * 11 + tick) % 50
            placements.append(
                Placement(
                    model=model,
                    neuron=name,
                    state="loaded",
                    devices=[f"cuda:{(m * 2) % gpus}", f"cuda:{(m * 2 + 1) % gpus}"],
                    backend="exllamav2",
                    memory_bytes=(12 + m) * GiB,
                    in_flight=phase % 5,
                    queued=phase % 3,
                    tokens_per_s=20.0 + phase * 1.7,
                    ttft_ms=80.0 + phase,
                    requests_total=1000 * n + 10 * m + tick,
                )
            )
            entry = catalogue.setdefault(model, CatalogueEntry(id=model))
            entry.available_on.append(name)
            entry.loaded_on.append(name)
    return FleetSnapshot(
        time=T0 + tick,
        neurons=fleet_neurons,
        placements=placements,
        catalogue=list(catalogue.values()),
    )
