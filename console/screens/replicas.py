"""The replicas dialog: how many placements of a model the gateway keeps, MIN to MAX.

Like unload it asks before anything changes: the fields start at the model's current
range, the question says what the change does (loads at once for a higher MIN, may unload
for a lower MAX), and Cancel has the focus until a field is edited.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from cortex.common.fleet import ReplicaStatus


@dataclass(frozen=True, slots=True)
class ReplicaChoice:
    model: str
    min: int
    max: int


def parse_range(low: str, high: str) -> tuple[int, int] | str:
    """``(min, max)``, or what is wrong with them in words."""
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        return "MIN and MAX are whole numbers"
    if lo < 0:
        return "MIN must be 0 or more"
    if hi < 1:
        return "MAX must be 1 or more"
    if lo > hi:
        return f"MIN ({lo}) must not be above MAX ({hi})"
    return (lo, hi)


def consequence(current: ReplicaStatus | None, loaded: int, lo: int, hi: int) -> str:
    """What setting ``lo``..``hi`` will do, given what serves now."""
    if lo > loaded:
        return f"The gateway loads {lo - loaded} more replica(s) now, where there is room."
    if hi < loaded:
        return f"{loaded - hi} replica(s) above MAX are unloaded once idle."
    if current is not None and (lo, hi) == (current.min, current.max):
        return "This is the current range."
    return "Nothing loads or unloads now; scaling follows the queue within the range."


class ReplicasScreen(ModalScreen[ReplicaChoice | None]):
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, model: str, current: ReplicaStatus | None, loaded: int) -> None:
        super().__init__()
        self.model = model
        self.current = current
        self.loaded = loaded

    @property
    def message(self) -> str:
        return str(self.query_one("#replicas-message", Static).render())

    def compose(self) -> ComposeResult:
        low = self.current.min if self.current else 1
        high = self.current.max if self.current else 1
        with Vertical(id="replicas-dialog", classes="dialog"):
            yield Label(f"Replicas of {self.model}", classes="dialog-title")
            yield Static(self._now(), id="replicas-now")
            with Horizontal(id="replicas-fields"):
                yield Label("MIN", classes="dialog-label")
                yield Input(str(low), id="replicas-min", type="integer")
                yield Label("MAX", classes="dialog-label")
                yield Input(str(high), id="replicas-max", type="integer")
            yield Static("", id="replicas-message")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Set replicas", variant="warning", id="replicas-confirm")
                yield Button("Cancel", id="replicas-cancel")

    def _now(self) -> str:
        serving = f"{self.loaded} loaded"
        if self.current is None:
            return f"Now: {serving}; the gateway reports no replica range."
        return (
            f"Now: {serving}, {self.current.wanted} wanted, range "
            f"{self.current.min}-{self.current.max} ({self.current.source})."
        )

    def on_mount(self) -> None:
        for box in self.query(Input):
            box.cursor_blink = False
        self._check()
        self.query_one("#replicas-cancel", Button).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._check()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input.id == "replicas-min":
            self.query_one("#replicas-max", Input).focus()
        else:
            self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "replicas-confirm":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def set_range(self, low: int, high: int) -> None:
        """Fill in both fields (tests, the command palette)."""
        self.query_one("#replicas-min", Input).value = str(low)
        self.query_one("#replicas-max", Input).value = str(high)
        self._check()

    def _parsed(self) -> tuple[int, int] | str:
        return parse_range(
            self.query_one("#replicas-min", Input).value,
            self.query_one("#replicas-max", Input).value,
        )

    def _check(self) -> None:
        parsed = self._parsed()
        message = self.query_one("#replicas-message", Static)
        confirm = self.query_one("#replicas-confirm", Button)
        if isinstance(parsed, str):
            message.update(f"[red]{parsed}[/red]")
            confirm.disabled = True
            return
        confirm.disabled = False
        message.update(consequence(self.current, self.loaded, *parsed))

    def _submit(self) -> None:
        parsed = self._parsed()
        if isinstance(parsed, str):
            self.notify(parsed, severity="warning")
            return
        self.dismiss(ReplicaChoice(self.model, *parsed))
