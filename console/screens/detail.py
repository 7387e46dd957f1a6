"""Details of one neuron or one placement, kept live from the fleet state."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from cortex.common.fleet import Placement
from cortex.common.neuron import PrefixCacheStatus
from cortex.console import format as fmt
from cortex.console.format import TEMP_THRESHOLDS, UTIL_THRESHOLDS, VRAM_THRESHOLDS, Thresholds
from cortex.console.state import FleetState, PlacementKey
from cortex.console.widgets import cells


def _fields(rows: list[tuple[str, RenderableType | str | None]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for name, value in rows:
        table.add_row(name, "-" if value is None or value == "" else value)
    return table


def _when(timestamp: float | None, now: float) -> str | None:
    if timestamp is None:
        return None
    return f"{fmt.clock(timestamp)} ({fmt.duration(now - timestamp)} ago)"


def neuron_details(
    state: FleetState, name: str, now: float, thresholds: Thresholds = VRAM_THRESHOLDS
) -> RenderableType:
    neuron = state.neurons.get(name)
    if neuron is None:
        return Text(f"Neuron {name} is no longer part of the fleet.", style="yellow")
    head = _fields(
        [
            ("status", cells.neuron_status(neuron)),
            ("endpoint", neuron.endpoint),
            ("version", neuron.version),
            ("backends", ", ".join(neuron.backends)),
            ("last seen", _when(neuron.last_seen, now)),
        ]
    )
    devices = Table(title="Devices", title_justify="left", expand=True, box=None)
    for column in ("id", "name", "memory", "used / total", "budget", "util", "temp", "power"):
        devices.add_column(column, no_wrap=True)
    for d in neuron.devices:
        power = (
            f"{d.power_w:.0f}/{d.power_limit_w:.0f} W"
            if d.power_w is not None and d.power_limit_w
            else (f"{d.power_w:.0f} W" if d.power_w is not None else "-")
        )
        devices.add_row(
            d.id,
            d.name,
            cells.meter(d.memory_used, d.memory_total, thresholds, width=10),
            fmt.memory_pair(d.memory_used, d.memory_total),
            fmt.human_bytes(d.budget) if d.budget else "-",
            cells.figure(d.utilization, "%", UTIL_THRESHOLDS),
            cells.figure(d.temperature_c, "°C", TEMP_THRESHOLDS),
            power,
        )
    models = placements_table(
        "Models", "model", sorted(state.placements_of(name), key=lambda p: p.model)
    )
    processes = [
        f"{d.id}: {proc.model} (pid {proc.pid}) {fmt.human_bytes(proc.bytes)}"
        for d in neuron.devices
        for proc in d.processes
    ]
    parts: list[RenderableType] = [head, Text(""), devices, Text(""), models]
    if processes:
        parts += [Text(""), Text("Processes", style="italic"), Text("\n".join(processes))]
    return Group(*parts)


def prefix_cache_rows(
    cache: PrefixCacheStatus | None,
) -> list[tuple[str, RenderableType | str | None]]:
    """Size against budget, hit rate and tokens reused; one line when the neuron has none."""
    if cache is None:
        return [("prefix cache", Text("not reported by this neuron", style="dim"))]
    if cache.budget_bytes <= 0:
        return [("prefix cache", Text("off", style="dim"))]
    size = f"{fmt.human_bytes(cache.size_bytes)} of {fmt.human_bytes(cache.budget_bytes)}"
    return [
        ("prefix cache", f"{size} ({fmt.plural(cache.entries, 'sequence')})"),
        ("cache hits", f"{fmt.ratio(cache.hits, cache.lookups)} ({cache.hits}/{cache.lookups})"),
        ("cached tokens", f"{cache.cached_tokens:,} prompt tokens reused"),
    ]


def summed_cache(placements: list[Placement]) -> PrefixCacheStatus | None:
    """The prefix caches of a model's placements added up (None: none reported)."""
    caches = [p.prefix_cache for p in placements if p.prefix_cache is not None]
    if not caches:
        return None
    return PrefixCacheStatus(
        budget_bytes=sum(c.budget_bytes for c in caches),
        size_bytes=sum(c.size_bytes for c in caches),
        entries=sum(c.entries for c in caches),
        lookups=sum(c.lookups for c in caches),
        hits=sum(c.hits for c in caches),
        cached_tokens=sum(c.cached_tokens for c in caches),
    )


def catalogue_details(state: FleetState, model: str, now: float) -> RenderableType:
    """A catalogue model: where it can load, its replicas, and each placement."""
    entry = state.catalogue.get(model)
    placements = sorted(state.placements_for(model), key=lambda p: p.neuron)
    if entry is None and not placements:
        return Text(f"{model} is no longer in the catalogue.", style="yellow")
    rows: list[tuple[str, RenderableType | str | None]] = [
        ("state", cells.model_state(placements, bool(entry and entry.available_on))),
        ("pinned", "yes" if state.is_pinned(model) else "no"),
    ]
    if entry is not None:
        replicas = entry.replicas
        rows += [
            ("on disk on", ", ".join(entry.available_on) or Text("no neuron", style="red")),
            ("pin source", entry.pin_source),
            ("priority", str(entry.priority)),
            ("estimate", fmt.human_bytes(entry.memory_estimate) if entry.memory_estimate else None),
            ("context", str(entry.max_seq_len) if entry.max_seq_len else None),
            ("models.toml", "yes" if entry.profile else "no"),
        ]
        if replicas is not None:
            rows += [
                ("replicas", f"{replicas.actual} serving, {replicas.wanted} wanted"),
                ("range", f"{replicas.min}-{replicas.max} ({replicas.source})"),
                ("queue", f"{replicas.queue_depth} waiting, longest {replicas.queue_wait_s:.1f} s"),
            ]
    rows += prefix_cache_rows(summed_cache(placements))
    table = placements_table("Placements", "neuron", placements)
    return Group(_fields(rows), Text(""), table)


def model_details(state: FleetState, key: PlacementKey, now: float) -> RenderableType:
    placement = state.placements.get(key)
    model, neuron = key
    if placement is None:
        return Text(f"{model} is no longer placed on {neuron}.", style="yellow")
    entry = state.catalogue.get(model)
    progress = placement.progress
    history = state.history.get(key, ())
    rows: list[tuple[str, RenderableType | str | None]] = [
        ("neuron", neuron),
        ("state", cells.placement_state(placement, width=20)),
        ("stage", f"{progress.stage} {progress.done}/{progress.total}" if progress else None),
        ("backend", placement.backend),
        ("devices", ", ".join(placement.devices)),
        ("pinned", "yes" if placement.pinned or state.is_pinned(model) else "no"),
        ("memory", fmt.human_bytes(placement.memory_bytes) if placement.memory_bytes else None),
        ("context", str(placement.max_seq_len) if placement.max_seq_len else None),
        ("in flight", str(placement.in_flight)),
        ("queued", str(placement.queued)),
        ("tok/s", fmt.rate(placement.tokens_per_s)),
        ("history", Text(fmt.sparkline(history, 40), style="cyan")),
        ("TTFT (last)", fmt.millis(placement.ttft_ms)),
        ("requests", str(placement.requests_total)),
        ("tokens out", str(placement.completion_tokens_total)),
        ("loaded at", _when(placement.loaded_at, now)),
        ("last used", _when(placement.last_used_at, now)),
        ("error", Text(placement.error, style="red") if placement.error else None),
        *prefix_cache_rows(placement.prefix_cache),
    ]
    if entry is not None:
        rows += [
            ("on disk on", ", ".join(entry.available_on)),
            ("loaded on", ", ".join(entry.loaded_on)),
            ("pin source", entry.pin_source),
            ("priority", str(entry.priority)),
            ("estimate", fmt.human_bytes(entry.memory_estimate) if entry.memory_estimate else None),
        ]
    return _fields(rows)


class DetailScreen(ModalScreen[None]):
    """``target`` is ``("neuron", name)``, ``("model", (model, neuron))`` (a placement)
    or ``("catalogue", model)``."""

    BINDINGS = [Binding("escape,enter", "close", "Close")]

    def __init__(
        self,
        state: FleetState,
        target: tuple[str, object],
        clock: Callable[[], float],
        thresholds: Thresholds = VRAM_THRESHOLDS,
    ) -> None:
        super().__init__()
        self.state = state
        self.target = target
        self.clock = clock
        self.thresholds = thresholds

    @property
    def heading(self) -> str:
        kind, what = self.target
        if kind == "neuron":
            return f"Neuron {what}"
        if kind == "catalogue":
            return f"Model {what}"
        assert isinstance(what, tuple)
        model, neuron = what
        return f"{model} on {neuron}"

    def compose(self) -> ComposeResult:
        with Vertical(id="detail-dialog", classes="dialog"):
            yield Label(self.heading, classes="dialog-title")
            with VerticalScroll():
                yield Static(self.render_details(), id="detail-body")
            yield Label("esc closes", classes="dialog-hint")

    def on_mount(self) -> None:
        self.set_interval(0.5, self.refresh_details)

    def render_details(self) -> RenderableType:
        kind, what = self.target
        now = self.clock()
        if kind == "neuron":
            return neuron_details(self.state, str(what), now, self.thresholds)
        if kind == "catalogue":
            return catalogue_details(self.state, str(what), now)
        return model_details(self.state, what, now)  # type: ignore[arg-type]

    def refresh_details(self) -> None:
        self.query_one("#detail-body", Static).update(self.render_details())

    def action_close(self) -> None:
        self.dismiss(None)


def placements_table(title: str, first: str, placements: Iterable[Placement]) -> Table:
    """One row a placement, led by its ``first`` field (``model`` or ``neuron``)."""
    table = Table(title=title, title_justify="left", expand=True, box=None)
    for column in (first, "state", "devices", "memory", "busy", "queue", "tok/s", "served"):
        table.add_column(column, no_wrap=True)
    for p in placements:
        table.add_row(
            getattr(p, first),
            cells.placement_state(p),
            ",".join(p.devices),
            fmt.human_bytes(p.memory_bytes) if p.memory_bytes else "-",
            str(p.in_flight),
            str(p.queued),
            fmt.rate(p.tokens_per_s),
            str(p.requests_total),
        )
    return table
