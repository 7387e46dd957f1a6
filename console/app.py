"""The Textual fleet console.

Data flow: one app-level worker follows the gateway's event stream into a plain
:class:`FleetState`; a 2 Hz timer drains what changed and applies only that to the
widgets inside one ``batch_update``. Widgets are touched only from the UI loop (the
stream and actions are async workers on that loop); actions that change the fleet
go through the gateway's fleet API in their own workers, and unload and replicas ask
first.

Views: the top pane shows the nodes (``1``) or the requests in flight (``2``); the
models table below lists the whole catalogue, each model followed by its placements.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Footer, Input

from cortex.common.fleet import LogEntry
from cortex.console.client import Action, AsyncFleetClient, GatewayError
from cortex.console.commands import FleetCommands
from cortex.console.format import VRAM_THRESHOLDS, Thresholds
from cortex.console.screens.confirm import ConfirmScreen
from cortex.console.screens.detail import DetailScreen
from cortex.console.screens.help import HelpScreen
from cortex.console.screens.load import LoadChoice, LoadScreen
from cortex.console.screens.replicas import ReplicaChoice, ReplicasScreen
from cortex.console.state import Changes, FleetState, PlacementKey
from cortex.console.stream import follow_fleet
from cortex.console.widgets.eventlog import EventLog
from cortex.console.widgets.header import FleetHeader, header_text
from cortex.console.widgets.rowtable import RowTable
from cortex.console.widgets.tables import ModelsTable, NodesTable, RequestsTable

MUTATING = frozenset({"load", "unload", "pin", "replicas"})
NEEDS_MODEL = frozenset({"pin", "replicas"})
VIEWS = ("nodes", "requests")  # what the top pane can show


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
        Binding("r", "replicas", "Replicas", id="replicas"),
        Binding("1", "view('nodes')", "Nodes", id="view_nodes"),
        Binding("2", "view('requests')", "Requests", id="view_requests"),
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
        self.view = "nodes"
        self._had_selection: tuple[bool, bool] | None = None

    # ------------------------------------------------------------------ layout

    def compose(self) -> ComposeResult:
        # Kept as attributes: the flush reaches them while a dialog is the active screen.
        self.header = FleetHeader(id="header")
        self.nodes = NodesTable(self.state, self.thresholds, id="nodes")
        self.requests = RequestsTable(self.state, id="requests")
        self.models = ModelsTable(self.state, id="models")
        self.event_log = EventLog(id="log")
        yield self.header
        with Vertical(id="body"):
            yield self.nodes
            yield self.requests
            yield self.models
            yield self.event_log
        yield Input(
            placeholder="filter by neuron, device, model or request; enter keeps it, esc clears",
            id="filter",
        )
        yield Footer()

    def on_mount(self) -> None:
        self.nodes.border_title = "Nodes"
        self.requests.border_title = "Requests"
        self.requests.display = False
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
            self.header.show(
                header_text(
                    self.state,
                    now,
                    self.gateway or "(no gateway)",
                    readonly=self.readonly,
                    thresholds=self.thresholds,
                )
            )
            if changes.fleet and self.view == "nodes":
                self.nodes.refresh_from(changes)
            if (changes.requests or changes.reset) and self.view == "requests":
                self.requests.refresh_from(changes)
                self._title_requests()
            if changes.fleet or changes.history:
                self.models.refresh_from(changes)
            if changes.log:
                self.event_log.add(changes.log)
        self._bindings_may_have_changed()
        self.flushes += 1

    def _bindings_may_have_changed(self) -> None:
        """Refresh the footer only when unload/pin/replicas become (un)available.

        A footer refresh recomposes it (a CSS pass), far too costly for every flush.
        """
        selection = (self.selected_model() is not None, bool(self.unload_target()))
        if selection != self._had_selection:
            self._had_selection = selection
            self.refresh_bindings()

    def _title_requests(self) -> None:
        shown, total = len(self.state.requests), self.state.requests_total
        count = f"{total}" if shown == total else f"{shown} of {total}"
        self.requests.border_title = f"Requests ({count} in flight)"

    def set_filter(self, text: str) -> None:
        self.nodes.filter = self.models.filter = self.requests.filter = text.strip()
        everything = Changes(reset=True)
        with self.batch_update():
            self.top_table.refresh_from(everything)
            self.models.refresh_from(everything)
        self._bindings_may_have_changed()

    @property
    def top_table(self) -> NodesTable | RequestsTable:
        return self.nodes if self.view == "nodes" else self.requests

    def action_view(self, view: str) -> None:
        """Show the nodes or the requests in the top pane (``1`` / ``2``)."""
        if view not in VIEWS or view == self.view:
            return
        had_focus = self.focused is self.top_table
        self.view = view
        with self.batch_update():
            self.nodes.display = view == "nodes"
            self.requests.display = view == "requests"
            self.top_table.refresh_from(Changes(reset=True))
            if view == "requests":
                self._title_requests()
        if had_focus:
            self.top_table.focus()

    # ------------------------------------------------------------------ bindings

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in MUTATING:
            if self.readonly:
                return False
            if action in NEEDS_MODEL and self.selected_model() is None:
                return None  # shown greyed out: nothing to act on
            if action == "unload" and not self.unload_target():
                return None
        return True

    def selected_placement(self) -> PlacementKey | None:
        return self.models.selected_placement()

    def selected_model(self) -> str | None:
        """The model under the models table's cursor (its own row or a placement's)."""
        return self.models.selected_model()

    def unload_target(self) -> tuple[str, str | None] | None:
        """What ``u`` unloads: the placement under the cursor, or on a model's row the
        model from wherever it is placed; None when the model is placed nowhere."""
        key = self.selected_placement()
        if key is not None:
            return key
        model = self.selected_model()
        if model is None or not self.state.placements_for(model):
            return None
        return (model, None)

    def on_row_table_highlighted(self, event: RowTable.Highlighted) -> None:
        self._bindings_may_have_changed()

    def on_row_table_selected(self, event: RowTable.Selected) -> None:
        event.stop()
        self.show_details_for(event.table, event.key)

    def action_details(self) -> None:
        focused = self.focused
        table = focused if isinstance(focused, RowTable) else self.models
        self.show_details_for(table, table.selected_key)

    def show_details_for(self, table: RowTable, row_key: str | None) -> None:
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
            elif (model := table.model_of(row_key)) is not None:
                self.show_details(("catalogue", model))
        elif isinstance(table, RequestsTable):
            request = table.request_of(row_key)
            if request is None:
                return
            if request.neuron and (request.model, request.neuron) in self.state.placements:
                self.show_details(("model", (request.model, request.neuron)))
            else:
                self.show_details(("catalogue", request.model))

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
        screen = LoadScreen(
            list(self.state.catalogue.values()),
            list(self.state.neurons.values()),
            model=self.selected_model(),
        )
        self.push_screen(screen, callback=self._load_chosen)

    def _load_chosen(self, choice: LoadChoice | None) -> None:
        if choice is not None:
            self.request_action("load", choice.model, choice.neuron)

    def action_unload(self) -> None:
        target = self.unload_target()
        if target is None:
            self.notify("Select a loaded model in the Models table first.", severity="warning")
            return
        self.confirm_unload(target)

    def confirm_unload(self, key: tuple[str, str | None]) -> None:
        """Ask, then unload ``model`` from ``neuron`` (None: from every neuron)."""
        if self.readonly:
            return
        model, neuron = key
        if neuron is None:
            placements = self.state.placements_for(model)
            where = ", ".join(sorted(p.neuron for p in placements))
            question = f"Unload [b]{model}[/b] from every neuron ([b]{where}[/b])?"
        else:
            placement = self.state.placements.get((model, neuron))
            placements = [placement] if placement is not None else []
            question = f"Unload [b]{model}[/b] from neuron [b]{neuron}[/b]?"
        in_flight = sum(p.in_flight for p in placements)
        queued = sum(p.queued for p in placements)
        busy = bool(in_flight or queued)
        if busy:
            question += (
                f"\n\nIt is busy: {in_flight} request(s) in flight and {queued} queued will fail."
            )

        def answered(yes: bool | None) -> None:
            if yes:
                self.request_action("unload", model, neuron, force=busy)

        label = "Unload anyway" if busy else "Unload"
        self.push_screen(ConfirmScreen("Unload model", question, label), callback=answered)

    def action_pin(self) -> None:
        model = self.selected_model()
        if model is None:
            self.notify("Select a model in the Models table first.", severity="warning")
            return
        self.request_action("unpin" if self.state.is_pinned(model) else "pin", model, None)

    def action_replicas(self) -> None:
        model = self.selected_model()
        if model is None:
            self.notify("Select a model in the Models table first.", severity="warning")
            return
        self.ask_replicas(model)

    def ask_replicas(self, model: str) -> None:
        """The replicas dialog for ``model``; setting them happens only on confirm."""
        if self.readonly:
            return
        entry = self.state.catalogue.get(model)
        loaded = sum(1 for p in self.state.placements_for(model) if p.state == "loaded")
        screen = ReplicasScreen(model, entry.replicas if entry else None, loaded)
        self.push_screen(screen, callback=self._replicas_chosen)

    def _replicas_chosen(self, choice: ReplicaChoice | None) -> None:
        if choice is None or self.readonly:
            return
        if self.client is None:
            self.notify("Not connected to a gateway.", severity="error")
            return
        self.notify(f"replicas {choice.model}: {choice.min}-{choice.max}…", timeout=3)
        self.set_replicas(choice)

    @work(group="actions", exit_on_error=False)
    async def set_replicas(self, choice: ReplicaChoice) -> None:
        assert self.client is not None
        try:
            result = await self.client.set_replicas(choice.model, choice.min, choice.max)
        except GatewayError as exc:
            self.report_failure("replicas", choice.model, None, exc.message)
            return
        if result.ok:
            message = result.message or f"replicas {choice.model}: {choice.min}-{choice.max}"
            self.notify(message, timeout=4)
        else:
            self.report_failure("replicas", choice.model, None, result.message)

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
