"""The header: the fleet at a glance and the state of the connection to the gateway."""

from __future__ import annotations

import math

from rich.text import Text
from textual.widgets import Static

from cortex.console import format as fmt
from cortex.console.format import VRAM_THRESHOLDS, Thresholds
from cortex.console.state import Connection, FleetState
from cortex.console.widgets import cells

_SEPARATOR = (" │ ", "dim")


def connection_text(connection: Connection, now: float, has_data: bool = True) -> Text:
    """``● connected``, ``◌ connecting``, ``○ reconnecting in 3s · stale since 12:03:04``,
    or, when the gateway has never answered, ``○ not connected · retrying in 3s``."""
    if connection.status == "connected":
        return Text("● connected", style="bold green")
    if connection.status == "connecting":
        return Text("◌ connecting…", style="bold yellow")
    text = Text("○ ", style="bold red")
    wait = max(0.0, (connection.retry_at or now) - now)
    verb = "reconnecting" if has_data else "not connected · retrying"
    if wait > 0:
        text.append(f"{verb} in {math.ceil(wait)}s", style="bold red")
    else:
        text.append(f"{verb}…", style="bold red")
    if has_data and connection.since is not None:
        text.append(f" · stale since {fmt.clock(connection.since)}", style="red")
    if connection.error:
        text.append(f" · {connection.error}", style="dim")
    return text


def header_text(
    state: FleetState,
    now: float,
    gateway: str,
    *,
    readonly: bool = False,
    thresholds: Thresholds = VRAM_THRESHOLDS,
) -> Text:
    s = state.summary()
    text = Text()
    text.append(" cortex ", style="bold reverse")
    text.append(f" {gateway} ", style="bold")
    text.append(" ")
    text.append_text(connection_text(state.connection, now, state.snapshot_time is not None))
    if readonly:
        text.append("  [read-only]", style="bold magenta")
    sep = Text(_SEPARATOR[0], style=_SEPARATOR[1])
    capacity: list[Text] = []
    activity: list[Text] = []
    parts = capacity
    style = "green" if s.neurons_up == s.neurons_total else "bold red"
    parts.append(Text.assemble("neurons ", (f"{s.neurons_up}/{s.neurons_total} up", style)))
    devices = Text(f"{fmt.plural(s.gpus, 'GPU')}")
    if s.cpus:
        devices.append(f" + {s.cpus} CPU")
    parts.append(devices)
    if s.vram_total:
        parts.append(
            Text.assemble(
                "VRAM ",
                cells.meter(s.vram_used, s.vram_total, thresholds, width=8),
                f" {fmt.memory_pair(s.vram_used, s.vram_total)}",
            )
        )
    if s.ram_total:
        parts.append(
            Text.assemble(
                "RAM ",
                cells.meter(s.ram_used, s.ram_total, thresholds, width=8),
                f" {fmt.memory_pair(s.ram_used, s.ram_total)}",
            )
        )
    parts = activity
    parts.append(Text.assemble((fmt.rate(s.tokens_per_s), "bold cyan"), " tok/s"))
    parts.append(Text(f"{s.in_flight} in flight · {s.queued} queued"))
    models = Text(f"models {s.models_loaded} loaded")
    if s.models_loading:
        models.append(f" · {s.models_loading} loading", style="yellow")
    if s.models_failed:
        models.append(f" · {s.models_failed} failed", style="bold red")
    parts.append(models)
    text.append("\n ")
    text.append_text(sep.join(capacity))
    text.append("\n ")
    text.append_text(sep.join(activity))
    return text


class FleetHeader(Static):
    """Re-rendered by the app's flush; it repaints only when its text changes.

    Its height is fixed in CSS, so an update never needs a layout pass (which would
    repaint the whole screen, tables included).
    """

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._shown: Text | None = None

    def show(self, text: Text) -> None:
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)
