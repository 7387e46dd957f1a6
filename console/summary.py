"""The fleet at a glance, from neurons and placements: the console's header line and
``--json status``. Apart from :mod:`state` so the script path imports only this."""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from cortex.common.fleet import FleetNeuron, Placement
from cortex.common.neuron import Device


class FleetSummary(msgspec.Struct, frozen=True):
    """The fleet at a glance: the header line and ``--json status``."""

    neurons_up: int
    neurons_total: int
    gpus: int
    cpus: int
    vram_used: int
    vram_total: int
    ram_used: int
    ram_total: int
    tokens_per_s: float
    in_flight: int
    queued: int
    models_loaded: int
    models_loading: int
    models_failed: int
    models_available: int


def summarize(
    neurons: Iterable[FleetNeuron], placements: Iterable[Placement], catalogue_size: int
) -> FleetSummary:
    neurons = list(neurons)
    placements = list(placements)
    gpus = cpus = vram_used = vram_total = ram_used = ram_total = 0
    for neuron in neurons:
        if not neuron.up:
            continue
        for device in neuron.devices:
            if is_gpu(device):
                gpus += 1
                vram_used += device.memory_used
                vram_total += device.memory_total
            else:
                cpus += 1
                ram_used += device.memory_used
                ram_total += device.memory_total
    states = [p.state for p in placements]
    return FleetSummary(
        neurons_up=sum(1 for n in neurons if n.up),
        neurons_total=len(neurons),
        gpus=gpus,
        cpus=cpus,
        vram_used=vram_used,
        vram_total=vram_total,
        ram_used=ram_used,
        ram_total=ram_total,
        tokens_per_s=sum(p.tokens_per_s for p in placements),
        in_flight=sum(p.in_flight for p in placements),
        queued=sum(p.queued for p in placements),
        models_loaded=states.count("loaded"),
        models_loading=states.count("loading"),
        models_failed=states.count("failed"),
        models_available=catalogue_size,
    )


def is_gpu(device: Device) -> bool:
    return device.kind != "cpu"
