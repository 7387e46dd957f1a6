"""The Textual fleet console.

Data flow: one app-level worker follows the gateway's event stream into a plain
:class:`FleetState`; a 2 Hz timer drains what changed and applies only that to the
widgets inside one ``batch_update``. Widgets are touched only from the UI loop (the
stream and actions are async workers on that loop); actions that change the fleet
go through the gateway's fleet API in their own workers, and unload asks first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Footer, Input

from cortex.common.fleet import LogEntry
from cortex.console.client import Action, AsyncFleetClient, GatewayError
from cortex.console.commands import FleetCommands
from cortex.console.format import VRAM_THRESHOLDS, Thresholds
from cortex.console.screens.confirm import ConfirmScreen
from cortex.console.screens.detail import DetailScreen
from cortex.console.screens.help import HelpScreen
from cortex.console.screens.load import LoadChoice, LoadScreen
from cortex.console.state import Changes, FleetState, PlacementKey
from cortex.console.stream import follow_fleet
from cortex.console.widgets.eventlog import EventLog
from cortex.console.widgets.header import FleetHeader, header_text
from cortex.console.widgets.tables import ModelsTable, NodesTable

MUTATING = frozenset({"load", "unload", "pin"})
NEEDS_SELECTION = frozenset({"unload", "pin"})


class CortexConsole(App[int]):
    CSS_PATH = "console.tcss"
    TITLE = "cortex console"
    COMMANDS = App.COMMANDS | {FleetCommands}
    FLUSH_INTERVAL = 0.5

    BINDINGS = [
        Binding("q", "quit", "Quit", id="quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True, id="quit_ctrl_c"),
        Binding("question_mark", "help", "Help", key_display="?", id="help"),
        Binding("slash", "filter", "Filter", key_display="/", id="filter"),
        Binding("enter", "details", "Details", id="details"),
        Binding("l", "load", "Load", id="load"),
        Binding("u", "unload", "Unload", id="unload"),
        Binding("p", "pin", "Pin/unpin", id="pin"),
        Binding("escape", "clear_filter", "Clear filter", show=False, id="clear_filter"),
    ]

    def __init__(
        self,
        *,
        gateway: str = "",
        token: str | None = None,
        client: AsyncFleetClient | None = None,
        state: FleetState | None = None,
        readonly: bool = False,
        clock: Callable[[], float] = time.time,
        vram_thresholds: Thresholds = VRAM_THRESHOLDS,
        follow: bool = True,
    ) -> None:
        """``follow=False`` shows ``state`` as given, with no gateway (snapshots, benchmarks)."""
        super().__init__()
        self.gateway = gateway
        self.token = token
        self.client = client
        self.state = state if state is not None else FleetState()
        self.readonly = readonly
        self.clock = clock
        self.thresholds = vram_thresholds
        self.follow = follow and bool(gateway or client)
        self.flushes = 0
        self._had_selection: bool | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        yield FleetHeader(id="header")
        with Vertical(id="body"):
            yield NodesTable(self.state, self.thresholds, id="nodes")
            yield ModelsTable(self.state, id="models")
            yield EventLog(id="log")
        yield Input(
            placeholder="filter by neuron, device or model; enter keeps it, esc clears it",
            id="filter",
        )
        yield Footer()

    @property
    def nodes(self) -> NodesTable:
        return self.query_one("#nodes", NodesTable)

    @property
    def models(self) -> ModelsTable:
        return self.query_one("#models", ModelsTable)

    @property
    def event_log(self) -> EventLog:
        return self.query_one("#log", EventLog)

    def on_mount(self) -> None:
        self.nodes.border_title = "Nodes"
        self.models.border_title = "Models"
        self.event_log.border_title = "Events"
        box = self.query_one("#filter", Input)
        box.border_title = "filter"
        box.display = False
        self.models.focus()
        self.flush()
        self.set_interval(self.FLUSH_INTERVAL, self.flush, name="flush")
        if self.follow:
            if self.client is None:
                self.client = AsyncFleetClient(self.gateway, self.token)
            self.gateway = self.client.base_url
            self.follow_stream()

    async def on_unmount(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    # ------------------------------------------------------------------ data

    @work(exclusive=True, group="fleet-stream", exit_on_error=False)
    async def follow_stream(self) -> None:
        assert self.client is not None
        await follow_fleet(self.client, self.state, clock=self.clock)

    def flush(self) -> None:
        """Apply what changed in the state to the widgets (the 2 Hz timer)."""
        now = self.clock()
        self.state.sample(now)
        changes = self.state.take_changes()
        with self.batch_update():
            self.query_one(FleetHeader).show(
                header_text(
                    self.state,
                    now,
                    self.gateway or "(no gateway)",
                    readonly=self.readonly,
                    thresholds=self.thresholds,
                )
            )
            if changes.fleet:
                self.nodes.refresh_from(changes)
            if changes.fleet or changes.history:
                self.models.refresh_from(changes)
            if changes.log:
                self.event_log.add(changes.log)
        self._bindings_may_have_changed()
        self.flushes += 1

    def _bindings_may_have_changed(self) -> None:
        """Refresh the footer only when unload/pin become possible or impossible.

        A footer refresh recomposes it (a CSS pass), far too costly for every flush.
        """
        has_selection = self.selected_placement() is not None
        if has_selection != self._had_selection:
            self._had_selection = has_selection
            self.refresh_bindings()

    def set_filter(self, text: str) -> None:
        self.nodes.filter = self.models.filter = text.strip()
        everything = Changes(reset=True)
        with self.batch_update():
            self.nodes.refresh_from(everything)
            self.models.refresh_from(everything)
        self._bindings_may_have_changed()

    # ------------------------------------------------------------------ bindings

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in MUTATING:
            if self.readonly:
                return False
            if action in NEEDS_SELECTION and self.selected_placement() is None:
                return None  # shown greyed out: nothing to act on
        return True

    def selected_placement(self) -> PlacementKey | None:
        return self.models.selected_placement()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._bindings_may_have_changed()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.show_details_for(event.data_table, event.row_key.value)

    def action_details(self) -> None:
        focused = self.focused
        table = focused if isinstance(focused, NodesTable | ModelsTable) else self.models
        self.show_details_for(table, table.selected_key)

    def show_details_for(self, table: DataTable, row_key: str | None) -> None:
        if row_key is None:
            return
        if isinstance(table, NodesTable):
            name = table.neuron_of(row_key)
            if name is not None:
                self.show_details(("neuron", name))
        elif isinstance(table, ModelsTable):
            key = table.placement_of(row_key)
            if key is not None:
                self.show_details(("model", key))

    def show_details(self, target: tuple[str, object]) -> None:
        self.push_screen(DetailScreen(self.state, target, self.clock, self.thresholds))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.readonly, self.thresholds))

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        if not box.display:
            return
        box.value = ""
        box.display = False
        self.set_filter("")
        self.models.focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.set_filter(event.value)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value.strip():
                event.input.display = False
            self.models.focus()

    # ------------------------------------------------------------------ actions

    def action_load(self) -> None:
        if self.readonly:
            return
        selected = self.selected_placement()
        screen = LoadScreen(
            list(self.state.catalogue.values()),
            list(self.state.neurons.values()),
            model=selected[0] if selected else None,
        )
        self.push_screen(screen, callback=self._load_chosen)

    def _load_chosen(self, choice: LoadChoice | None) -> None:
        if choice is not None:
            self.request_action("load", choice.model, choice.neuron)

    def action_unload(self) -> None:
        key = self.selected_placement()
        if key is None:
            self.notify("Select a model in the Models table first.", severity="warning")
            return
        self.confirm_unload(key)

    def confirm_unload(self, key: PlacementKey) -> None:
        if self.readonly:
            return
        model, neuron = key
        placement = self.state.placements.get(key)
        busy = placement is not None and bool(placement.in_flight or placement.queued)
        question = f"Unload [b]{model}[/b] from neuron [b]{neuron}[/b]?"
        if busy:
            assert placement is not None
            question += (
                f"\n\nIt is busy: {placement.in_flight} request(s) in flight and "
                f"{placement.queued} queued will fail."
            )

        def answered(yes: bool | None) -> None:
            if yes:
                self.request_action("unload", model, neuron, force=busy)

        label = "Unload anyway" if busy else "Unload"
        self.push_screen(ConfirmScreen("Unload model", question, label), callback=answered)

    def action_pin(self) -> None:
        key = self.selected_placement()
        if key is None:
            self.notify("Select a model in the Models table first.", severity="warning")
            return
        model = key[0]
        self.request_action("unpin" if self.state.is_pinned(model) else "pin", model, None)

    def request_action(
        self, action: Action, model: str, neuron: str | None, *, force: bool = False
    ) -> None:
        if self.readonly:
            return
        if self.client is None:
            self.notify("Not connected to a gateway.", severity="error")
            return
        where = f" on {neuron}" if neuron and action == "load" else ""
        where = f" from {neuron}" if neuron and action == "unload" else where
        self.notify(f"{action} {model}{where}…", timeout=3)
        self.perform(action, model, neuron, force)

    @work(group="actions", exit_on_error=False)
    async def perform(self, action: Action, model: str, neuron: str | None, force: bool) -> None:
        """One fleet action; a load waits until done, its progress arrives as events."""
        assert self.client is not None
        try:
            result = await self.client.act(action, model, neuron, force=force)
        except GatewayError as exc:
            self.report_failure(action, model, neuron, exc.message)
            return
        if result.ok:
            self.notify(result.message or f"{action} {model}: done", timeout=4)
        else:
            self.report_failure(action, model, neuron, result.message)

    def report_failure(self, action: str, model: str, neuron: str | None, message: str) -> None:
        """Show the gateway's own words, in a notification and in the event log."""
        self.notify(message, title=f"{action} {model} failed", severity="error", timeout=10)
        self.state.add_log(
            LogEntry(
                time=self.clock(),
                kind="error",
                level="error",
                message=f"{action} {model} failed: {message}",
                model=model,
                neuron=neuron,
            )
        )


def run_console(
    *,
    gateway: str,
    token: str | None = None,
    readonly: bool = False,
    vram_thresholds: Thresholds = VRAM_THRESHOLDS,
) -> int:
    app = CortexConsole(
        gateway=gateway, token=token, readonly=readonly, vram_thresholds=vram_thresholds
    )
    app.run()
    return app.return_code or 0
