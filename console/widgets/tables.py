"""The nodes table (a row per neuron and per device) and the models table (a row per placement).

Both are :class:`KeyedTable`: rows have stable keys, and :meth:`KeyedTable.sync` touches
only cells whose content changed. Rows are rebuilt only when the set or order of keys
changes (a neuron, device or placement appears, or the filter changes), and then the
cursor stays on the same key.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding
from textual.coordinate import Coordinate
from textual.widgets import DataTable

from cortex.common.fleet import FleetNeuron, Placement
from cortex.console import format as fmt
from cortex.console.format import TEMP_THRESHOLDS, UTIL_THRESHOLDS, VRAM_THRESHOLDS, Thresholds
from cortex.console.state import Changes, FleetState, PlacementKey
from cortex.console.widgets import cells

Cells = tuple[Text | str, ...]


class KeyedTable(DataTable):
    """A row-cursor DataTable whose rows are keyed and updated cell by cell.

    Changed rows outside the visible window are only marked stale and rebuilt when they
    scroll into view: with hundreds of rows changing every second, the work per flush
    stays proportional to the screen, not to the fleet.
    """

    COLUMNS: ClassVar[Sequence[tuple[str, str, int]]] = ()  # (key, label, width)
    BINDINGS = [Binding("enter", "select_cursor", "Details")]  # shown in the footer
    MARGIN = 2  # rows beyond the visible window kept current, for smooth scrolling

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._rendered: dict[str, Cells] = {}
        self._order: list[str] = []
        self._stale: set[str] = set()
        self._build: Callable[[str], Cells] | None = None
        self._columns_added = False
        self.rebuilds = 0  # how often the rows were rebuilt (tests and benchmarks read it)

    def on_mount(self) -> None:
        self._add_columns()

    def _add_columns(self) -> None:
        if not self._columns_added:
            for key, label, width in self.COLUMNS:
                self.add_column(label, width=width, key=key)
            self._columns_added = True

    @property
    def row_keys(self) -> list[str]:
        return list(self._order)

    @property
    def stale_rows(self) -> int:
        return len(self._stale)

    @property
    def selected_key(self) -> str | None:
        if not self._order or self.cursor_row < 0 or self.cursor_row >= len(self._order):
            return None
        row_key, _ = self.coordinate_to_cell_key(Coordinate(self.cursor_row, 0))
        return row_key.value

    def sync(
        self, order: list[str], build: Callable[[str], Cells], dirty: Iterable[str] | None
    ) -> None:
        """Show rows ``order``; recompute cells of ``dirty`` keys (None: all of them)."""
        self._add_columns()
        self._build = build
        if order != self._order:
            previous = set(self._order)
            if order[: len(self._order)] == self._order:
                for key in order[len(self._order) :]:
                    self._add(key, build(key))
            elif all(key in previous for key in order) and _is_subsequence(order, self._order):
                for key in previous.difference(order):
                    self.remove_row(key)
                    del self._rendered[key]
                    self._stale.discard(key)
            else:
                self._rebuild(order, build)
                return
            self._order = list(order)
        if dirty is None:
            self._stale.update(self._order)
        else:
            self._stale.update(k for k in dirty if k in self._rendered)
        self.update_visible()

    def update_visible(self) -> None:
        """Bring the stale rows in (or near) the visible window up to date."""
        if not self._stale or self._build is None:
            return
        height = self.scrollable_content_region.height
        if height <= 0:  # not laid out yet: no window to go by
            window = list(self._stale)
        else:
            first = max(0, int(self.scroll_y) - self.MARGIN)
            window = self._order[first : first + height + 2 * self.MARGIN]
        cursor = self.selected_key
        if cursor is not None:
            window.append(cursor)  # details and actions read the cursor row
        for key in window:
            if key in self._stale:
                self._stale.discard(key)
                self._update_row(key, self._build(key))

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self.update_visible()

    def on_resize(self) -> None:
        self.update_visible()

    def _update_row(self, key: str, new: Cells) -> None:
        old = self._rendered[key]
        if new == old:
            return
        for (column, _, _), before, after in zip(self.COLUMNS, old, new, strict=True):
            if before != after:
                self.update_cell(key, column, after)
        self._rendered[key] = new

    def _add(self, key: str, row: Cells) -> None:
        self.add_row(*row, key=key)
        self._rendered[key] = row

    def _rebuild(self, order: list[str], build: Callable[[str], Cells]) -> None:
        selected = self.selected_key
        self.clear()
        self._rendered.clear()
        self._stale.clear()
        for key in order:
            self._add(key, build(key))
        self._order = list(order)
        self.rebuilds += 1
        if selected in self._rendered:
            self.move_cursor(row=order.index(selected), animate=False)


def _is_subsequence(short: list[str], long: list[str]) -> bool:
    it = iter(long)
    return all(key in it for key in short)


def _matches(text: str, needle: str) -> bool:
    return needle in text.lower()


# --------------------------------------------------------------------------- nodes


class NodesTable(KeyedTable):
    """One row per neuron, then one per device of that neuron (GPUs or the CPU)."""

    COLUMNS = (
        ("node", "Node", 16),
        ("status", "Status", 10),
        ("device", "Device", 22),
        ("memory", "Memory", 17),
        ("used", "Used", 16),
        ("util", "Util", 5),
        ("temp", "Temp", 5),
        ("models", "Models", 28),
    )

    def __init__(self, state: FleetState, thresholds: Thresholds = VRAM_THRESHOLDS, **kw) -> None:
        super().__init__(**kw)
        self.state = state
        self.thresholds = thresholds
        self.filter = ""
        self._owners: dict[str, tuple[str, str | None]] = {}  # row key -> (neuron, device id)
        self._by_neuron: dict[str, list[Placement]] = {}

    @staticmethod
    def neuron_key(name: str) -> str:
        return f"n:{name}"

    @staticmethod
    def device_key(name: str, device_id: str) -> str:
        return f"d:{name}:{device_id}"

    def neuron_of(self, key: str) -> str | None:
        """The neuron a row belongs to (its own row or one of its devices)."""
        owner = self._owners.get(key)
        return owner[0] if owner else None

    def refresh_from(self, changes: Changes) -> None:
        self._by_neuron = {}
        for placement in self.state.placements.values():
            self._by_neuron.setdefault(placement.neuron, []).append(placement)
        order = self.row_order()
        dirty: set[str] | None = None
        if not changes.reset:
            names = set(changes.neurons)
            names.update(neuron for _, neuron in changes.placements)
            dirty = set()
            for name in names:
                dirty.update(self._keys_of(name))
        self.sync(order, self._cells, dirty)

    def row_order(self) -> list[str]:
        self._owners.clear()
        order: list[str] = []
        for name in sorted(self.state.neurons):
            neuron = self.state.neurons[name]
            if self.filter and not self._shown(neuron):
                continue
            order.extend(self._keys_of(name))
        return order

    def _keys_of(self, name: str) -> list[str]:
        neuron = self.state.neurons.get(name)
        if neuron is None:
            return []
        keys = [self.neuron_key(name)]
        self._owners[keys[0]] = (name, None)
        for device in neuron.devices:
            key = self.device_key(name, device.id)
            self._owners[key] = (name, device.id)
            keys.append(key)
        return keys

    def _shown(self, neuron: FleetNeuron) -> bool:
        needle = self.filter.lower()
        if _matches(neuron.name, needle):
            return True
        if any(_matches(d.id, needle) or _matches(d.name, needle) for d in neuron.devices):
            return True
        return any(_matches(p.model, needle) for p in self._by_neuron.get(neuron.name, ()))

    def _cells(self, key: str) -> Cells:
        name, device_id = self._owners.get(key, ("", None))
        neuron = self.state.neurons.get(name)
        if neuron is None:
            return ("",) * len(self.COLUMNS)
        placements = self._by_neuron.get(neuron.name, ())
        if device_id is None:
            used = sum(d.memory_used for d in neuron.devices)
            total = sum(d.memory_total for d in neuron.devices)
            kinds = {d.kind for d in neuron.devices}
            gpus = sum(1 for d in neuron.devices if d.kind != "cpu")
            summary = fmt.plural(gpus, "GPU") if gpus else ", ".join(sorted(kinds)) or "-"
            names = ", ".join(sorted({p.model for p in placements})) or "-"
            if not neuron.up and neuron.error:
                summary_text = Text(neuron.error, style="red")
            else:
                summary_text = Text(summary, style="dim")
            return (
                cells.neuron_name(neuron),
                cells.neuron_status(neuron),
                summary_text,
                cells.meter(used, total, self.thresholds),
                Text(fmt.memory_pair(used, total)) if total else Text("-", style="dim"),
                Text(""),
                Text(""),
                Text(names, style="" if neuron.up else "dim"),
            )
        device = next((d for d in neuron.devices if d.id == device_id), None)
        if device is None:
            return ("",) * len(self.COLUMNS)
        style = "" if neuron.up else "dim"
        on_device = sorted(p.model for p in placements if device.id in p.devices)
        return (
            cells.device_name(device, neuron.up),
            Text(""),
            Text(device.name, style=style),
            cells.meter(device.memory_used, device.memory_total, self.thresholds),
            Text(fmt.memory_pair(device.memory_used, device.memory_total), style=style),
            cells.figure(device.utilization, "%", UTIL_THRESHOLDS),
            cells.figure(device.temperature_c, "°", TEMP_THRESHOLDS),
            Text(", ".join(on_device), style=style),
        )


# --------------------------------------------------------------------------- models


class ModelsTable(KeyedTable):
    """One row per placement: a model loaded, loading or failed on one neuron."""

    COLUMNS = (
        ("model", "Model", 20),
        ("node", "Node", 12),
        ("devices", "Devices", 8),
        ("state", "State", 16),
        ("pin", "Pin", 6),
        ("memory", "Memory", 9),
        ("in_flight", "Busy", 4),
        ("queued", "Queue", 5),
        ("tps", "tok/s", 6),
        ("history", "History", 12),
        ("ttft", "TTFT", 7),
        ("served", "Served", 7),
    )

    def __init__(self, state: FleetState, **kw) -> None:
        super().__init__(**kw)
        self.state = state
        self.filter = ""
        self._keys: dict[str, PlacementKey] = {}

    @staticmethod
    def row_key(key: PlacementKey) -> str:
        return f"{key[0]}@{key[1]}"

    def placement_of(self, row_key: str | None) -> PlacementKey | None:
        return self._keys.get(row_key) if row_key else None

    def selected_placement(self) -> PlacementKey | None:
        return self.placement_of(self.selected_key)

    def refresh_from(self, changes: Changes) -> None:
        placements = sorted(self.state.placements)
        needle = self.filter.lower()
        if needle:
            placements = [k for k in placements if _matches(k[0], needle) or _matches(k[1], needle)]
        self._keys = {self.row_key(k): k for k in placements}
        order = list(self._keys)
        dirty: set[str] | None = None
        if not (changes.reset or changes.catalogue):
            dirty = {self.row_key(k) for k in changes.placements | changes.history}
        self.sync(order, self._cells, dirty)

    def _cells(self, row_key: str) -> Cells:
        key = self._keys[row_key]
        placement = self.state.placements.get(key)
        if placement is None:
            return ("",) * len(self.COLUMNS)
        history = self.state.history.get(key, ())
        busy = "bold" if placement.in_flight else ""
        return (
            Text(placement.model, style="bold"),
            Text(placement.neuron),
            Text(",".join(placement.devices) or "-", style="dim"),
            cells.placement_state(placement),
            cells.pinned(placement.pinned or self.state.is_pinned(placement.model)),
            Text(fmt.human_bytes(placement.memory_bytes) if placement.memory_bytes else "-"),
            Text(str(placement.in_flight), style=busy),
            Text(str(placement.queued), style="yellow" if placement.queued else ""),
            Text(fmt.rate(placement.tokens_per_s), style=busy),
            Text(fmt.sparkline(history, 12), style="cyan"),
            Text(fmt.millis(placement.ttft_ms)),
            Text(str(placement.requests_total)),
        )
