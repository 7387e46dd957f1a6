"""``?``: the keys, and what the colours mean."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from cortex.console.format import VRAM_THRESHOLDS, Thresholds

READ_KEYS = [
    ("↑ ↓ / tab", "move in a table / between tables"),
    ("enter", "details of the neuron, model, placement or request under the cursor"),
    ("1 / 2", "top pane: the nodes / the requests in flight"),
    ("/", "filter neurons, models and requests by name (esc clears)"),
    ("ctrl+p", "command palette: every action by name"),
    ("?", "this help"),
    ("q / ctrl+c", "quit"),
]
ACTION_KEYS = [
    ("l", "load a model: pick it and a target neuron (or auto)"),
    ("u", "unload the selected placement, or on a model's row the model everywhere (asks)"),
    ("p", "pin or unpin the selected model (pinned models are never evicted)"),
    ("r", "replicas: how many placements of the selected model to keep (asks)"),
]


def help_table(readonly: bool, thresholds: Thresholds) -> Table:
    table = Table.grid(padding=(0, 3))
    table.add_column(style="bold cyan", no_wrap=True)
    table.add_column()
    for key, what in READ_KEYS + ([] if readonly else ACTION_KEYS):
        table.add_row(key, what)
    table.add_row("", "")
    legend = Text.assemble(
        ("green", "green"),
        f" below {thresholds.warn:.0f}%, ",
        ("yellow", "yellow"),
        f" from {thresholds.warn:.0f}%, ",
        ("red", "bold red"),
        f" from {thresholds.crit:.0f}% of memory used",
    )
    table.add_row("colours", legend)
    if readonly:
        table.add_row("read-only", "started with --readonly: no load, unload, pin or replicas")
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,enter", "close", "Close")]

    def __init__(self, readonly: bool, thresholds: Thresholds = VRAM_THRESHOLDS) -> None:
        super().__init__()
        self.readonly = readonly
        self.thresholds = thresholds

    def compose(self) -> ComposeResult:
        with Vertical(id="help-dialog", classes="dialog"):
            yield Label("cortex console: keys", classes="dialog-title")
            yield Static(help_table(self.readonly, self.thresholds), id="help-body")
            yield Label("esc closes", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
