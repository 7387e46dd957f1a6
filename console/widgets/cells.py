"""Rich text for table cells and the header: bars, states and figures, coloured by level."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text

from cortex.common.fleet import ActiveRequest, FleetNeuron, LogEntry, Placement, ReplicaStatus
from cortex.common.neuron import Device
from cortex.console import format as fmt
from cortex.console.format import Level, Thresholds

LEVEL_STYLE: dict[Level, str] = {"ok": "green", "warn": "yellow", "crit": "bold red"}

LOG_STYLE = {
    "load": "green",
    "unload": "cyan",
    "evict": "magenta",
    "pin": "blue",
    "unpin": "blue",
    "replicas": "cyan",
    "neuron_up": "green",
    "neuron_down": "bold red",
    "error": "bold red",
    "info": "dim",
}


def meter(used: float, total: float, thresholds: Thresholds, width: int = 12) -> Text:
    """``██████▍░░░░ 53%``: a bar coloured green, yellow or red by how full it is."""
    if total <= 0:
        return Text("-", style="dim")
    pct = fmt.percent(used, total)
    style = LEVEL_STYLE[fmt.level(pct, thresholds)]
    filled = fmt.bar_fill(pct / 100, width)
    text = Text(filled, style=style)
    text.append("░" * (width - len(filled)), style="dim")
    text.append(f" {pct:3.0f}%", style=style)
    return text


def figure(value: float | None, unit: str, thresholds: Thresholds) -> Text:
    """A reading such as utilisation or temperature; ``-`` where the device has none."""
    if value is None:
        return Text("-", style="dim")
    return Text(f"{value:.0f}{unit}", style=LEVEL_STYLE[fmt.level(value, thresholds)])


def neuron_status(neuron: FleetNeuron) -> Text:
    if neuron.up:
        return Text("● up", style="green")
    return Text("○ down", style="bold red")


def neuron_name(neuron: FleetNeuron) -> Text:
    return Text(neuron.name, style="bold" if neuron.up else "dim")


def device_name(device: Device, up: bool) -> Text:
    return Text(f" └ {device.id}", style="" if up else "dim")


def placement_state(placement: Placement, width: int = 10) -> Text:
    """``loaded``; while loading, a progress bar when the neuron counts modules, else
    the stage it is in (``◌ queued``, ``◌ starting``, ``◌ loading``)."""
    if placement.state == "loading":
        progress = placement.progress
        if progress is None or progress.total <= 0:
            stage = progress.stage if progress is not None else "loading"
            return Text(f"◌ {stage}", style="yellow")
        fraction = progress.fraction
        filled = fmt.bar_fill(fraction, width)
        text = Text(filled, style="yellow")
        text.append("░" * (width - len(filled)), style="dim")
        text.append(f" {fraction * 100:3.0f}%", style="yellow")
        return text
    if placement.state == "loaded":
        return Text("loaded", style="green")
    if placement.state == "failed":
        text = Text("failed", style="bold red")
        if placement.error:
            text.append(f" {placement.error}", style="red")
        return text
    return Text(placement.state, style="dim")


def model_state(placements: Sequence[Placement], on_disk: bool) -> Text:
    """A catalogue model at a glance: ``● 2 loaded``, ``◌ loading``, ``available``..."""
    states = [p.state for p in placements]
    loaded = states.count("loaded")
    if loaded:
        text = Text(f"● {loaded} loaded", style="green")
        if "loading" in states:
            text.append(f" +{states.count('loading')}", style="yellow")
        return text
    if "loading" in states:
        return Text("◌ loading", style="yellow")
    if "unloading" in states:
        return Text("◌ unloading", style="dim")
    if "failed" in states:
        return Text("failed", style="bold red")
    if on_disk:
        return Text("available", style="dim")
    return Text("not on disk", style="red")


def replicas(status: ReplicaStatus | None, placements: Sequence[Placement]) -> Text:
    """``1/2 1-3``: serving / wanted, then the range; yellow while short of wanted.

    A gateway without replicas reports none: then only the placements loaded count.
    """
    if status is None:
        loaded = sum(1 for p in placements if p.state == "loaded")
        return Text(str(loaded) if loaded else "-", style="dim")
    style = "yellow" if status.actual < status.wanted else ""
    text = Text(f"{status.actual}/{status.wanted}", style=style)
    span = str(status.min) if status.min == status.max else f"{status.min}-{status.max}"
    text.append(f" {span}", style="dim")
    return text


def request_state(request: ActiveRequest) -> Text:
    """``queued`` until it holds a placement, ``running`` until tokens flow, ``streaming``."""
    if request.neuron is None:
        return Text("queued", style="yellow")
    if request.ttft_ms is None:
        return Text("running", style="cyan")
    return Text("streaming", style="green")


def pinned(is_pinned: bool) -> Text:
    return Text("pinned", style="bold blue") if is_pinned else Text("")


def log_line(entry: LogEntry) -> Text:
    """``12:03:04 evict   demo-small on a (lru): ...`` for the event log."""
    style = "bold red" if entry.level == "error" else LOG_STYLE.get(entry.kind, "")
    if entry.level == "warning" and entry.kind not in ("evict", "neuron_down"):
        style = "yellow"
    text = Text(fmt.clock(entry.time), style="dim")
    text.append(f" {entry.kind:<12}", style=style)
    text.append(" ")
    text.append(entry.message, style="red" if entry.level == "error" else "")
    if entry.reason and entry.reason not in entry.message:
        text.append(f" (reason: {entry.reason})", style="magenta")
    return text
