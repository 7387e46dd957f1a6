"""The console's three tables, each a :class:`RowTable` over the fleet state.

- nodes: a row per neuron, then one per device of that neuron;
- models: the whole catalogue, a row per model (where it is on disk, its memory
  estimate, replicas, pin, its placements summed), then one per placement;
- requests: the requests the gateway is serving now.

Each table turns :class:`Changes` into the row keys to redraw; the rows themselves are
built only when they are on screen.
"""

from __future__ import annotations

from rich.text import Text

from cortex.common.fleet import ActiveRequest, FleetNeuron, Placement
from cortex.console import format as fmt
from cortex.console.format import TEMP_THRESHOLDS, UTIL_THRESHOLDS, VRAM_THRESHOLDS, Thresholds
from cortex.console.state import Changes, FleetState, PlacementKey
from cortex.console.widgets import cells
from cortex.console.widgets.rowtable import Cells, RowTable


def _matches(text: str, needle: str) -> bool:
    return needle in text.lower()


def _blank(count: int) -> Cells:
    return ("",) * count


# --------------------------------------------------------------------------- nodes


class NodesTable(RowTable):
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
            return _blank(len(self.COLUMNS))
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
                "",
                "",
                Text(names, style="" if neuron.up else "dim"),
            )
        device = next((d for d in neuron.devices if d.id == device_id), None)
        if device is None:
            return _blank(len(self.COLUMNS))
        style = "" if neuron.up else "dim"
        on_device = sorted(p.model for p in placements if device.id in p.devices)
        return (
            cells.device_name(device, neuron.up),
            "",
            Text(device.name, style=style),
            cells.meter(device.memory_used, device.memory_total, self.thresholds),
            Text(fmt.memory_pair(device.memory_used, device.memory_total), style=style),
            cells.figure(device.utilization, "%", UTIL_THRESHOLDS),
            cells.figure(device.temperature_c, "°", TEMP_THRESHOLDS),
            Text(", ".join(on_device), style=style),
        )


# --------------------------------------------------------------------------- models


class ModelsTable(RowTable):
    """The catalogue: a row per model, then a row per placement of it (`` └ neuron``)."""

    COLUMNS = (
        ("model", "Model", 20),
        ("state", "State", 14),
        ("where", "Where", 12),
        ("memory", "Memory", 9),
        ("replicas", "Replicas", 9),
        ("pin", "Pin", 6),
        ("in_flight", "Busy", 4),
        ("queued", "Queue", 5),
        ("tps", "tok/s", 6),
        ("history", "History", 10),
        ("ttft", "TTFT", 7),
        ("served", "Served", 7),
    )

    def __init__(self, state: FleetState, **kw) -> None:
        super().__init__(**kw)
        self.state = state
        self.filter = ""
        self._keys: dict[str, PlacementKey] = {}
        self._model_rows: dict[str, str] = {}  # row key -> model
        self._by_model: dict[str, list[Placement]] = {}

    @staticmethod
    def model_key(model: str) -> str:
        return f"m:{model}"

    @staticmethod
    def row_key(key: PlacementKey) -> str:
        return f"{key[0]}@{key[1]}"

    def placement_of(self, row_key: str | None) -> PlacementKey | None:
        return self._keys.get(row_key) if row_key else None

    def model_of(self, row_key: str | None) -> str | None:
        """The model a row shows (its own row or one of its placements)."""
        if row_key is None:
            return None
        placement = self._keys.get(row_key)
        return placement[0] if placement else self._model_rows.get(row_key)

    def selected_placement(self) -> PlacementKey | None:
        return self.placement_of(self.selected_key)

    def selected_model(self) -> str | None:
        return self.model_of(self.selected_key)

    def refresh_from(self, changes: Changes) -> None:
        by_model: dict[str, list[Placement]] = {}
        for key in sorted(self.state.placements):
            by_model.setdefault(key[0], []).append(self.state.placements[key])
        self._by_model = by_model
        order = self.row_order()
        dirty: set[str] | None = None
        if not changes.reset:
            dirty = {self.row_key(k) for k in changes.placements | changes.history}
            models = self.state.catalogue if changes.catalogue else ()
            dirty.update(self.model_key(m) for m in models)
            dirty.update(self.model_key(m) for m, _ in changes.placements)
        self.sync(order, self._cells, dirty)

    def row_order(self) -> list[str]:
        self._keys.clear()
        self._model_rows.clear()
        needle = self.filter.lower()
        order: list[str] = []
        for model in sorted(set(self.state.catalogue) | set(self._by_model)):
            placements = self._by_model.get(model, [])
            if needle and not _matches(model, needle):
                placements = [p for p in placements if _matches(p.neuron, needle)]
                if not placements:
                    continue
            key = self.model_key(model)
            self._model_rows[key] = model
            order.append(key)
            for placement in placements:
                placement_key = (placement.model, placement.neuron)
                row = self.row_key(placement_key)
                self._keys[row] = placement_key
                order.append(row)
        return order

    def _cells(self, row_key: str) -> Cells:
        model = self._model_rows.get(row_key)
        if model is not None:
            return self._model_cells(model)
        key = self._keys.get(row_key)
        placement = self.state.placements.get(key) if key else None
        if placement is None:
            return _blank(len(self.COLUMNS))
        history = self.state.history.get((placement.model, placement.neuron), ())
        busy = "bold" if placement.in_flight else ""
        return (
            Text(f" └ {placement.neuron}"),
            cells.placement_state(placement, width=8),
            Text(fmt.devices(placement.devices), style="dim"),
            Text(fmt.human_bytes(placement.memory_bytes) if placement.memory_bytes else "-"),
            "",
            "",
            Text(str(placement.in_flight), style=busy),
            Text(str(placement.queued), style="yellow" if placement.queued else ""),
            Text(fmt.rate(placement.tokens_per_s), style=busy),
            Text(fmt.sparkline(history, 10), style="cyan"),
            Text(fmt.millis(placement.ttft_ms)),
            Text(str(placement.requests_total)),
        )

    def _model_cells(self, model: str) -> Cells:
        entry = self.state.catalogue.get(model)
        placements = self._by_model.get(model, [])
        in_flight = sum(p.in_flight for p in placements)
        queued = sum(p.queued for p in placements)
        busy = "bold" if in_flight else ""
        on_disk = entry.available_on if entry is not None else []
        estimate = entry.memory_estimate if entry is not None else None
        return (
            Text(model, style="bold"),
            cells.model_state(placements, bool(on_disk)),
            Text(fmt.names(on_disk, 12), style="dim" if on_disk else "red"),
            Text(f"~{fmt.human_bytes(estimate)}" if estimate else "-", style="dim"),
            cells.replicas(entry.replicas if entry is not None else None, placements),
            cells.pinned(self.state.is_pinned(model)),
            Text(str(in_flight), style=busy),
            Text(str(queued), style="yellow" if queued else ""),
            Text(fmt.rate(sum(p.tokens_per_s for p in placements)), style=busy),
            "",
            "",
            Text(str(sum(p.requests_total for p in placements))),
        )


# --------------------------------------------------------------------------- requests


class RequestsTable(RowTable):
    """The requests the gateway is serving now, oldest first."""

    COLUMNS = (
        ("model", "Model", 20),
        ("node", "Node", 12),
        ("client", "Client", 12),
        ("state", "State", 9),
        ("tps", "tok/s", 6),
        ("ttft", "TTFT", 7),
        ("tokens", "Tokens", 6),
        ("age", "Age", 7),
        ("id", "Request", 28),
    )

    def __init__(self, state: FleetState, **kw) -> None:
        super().__init__(**kw)
        self.state = state
        self.filter = ""
        self._rows: dict[str, ActiveRequest] = {}

    def request_of(self, row_key: str | None) -> ActiveRequest | None:
        return self._rows.get(row_key) if row_key else None

    def refresh_from(self, changes: Changes) -> None:
        needle = self.filter.lower()
        rows: dict[str, ActiveRequest] = {}
        for request in self.state.requests:
            if needle and not (
                _matches(request.model, needle) or _matches(request.neuron or "", needle)
            ):
                continue
            key = f"r:{request.id}"
            while key in rows:  # a client may reuse its x-request-id
                key += "'"
            rows[key] = request
        self._rows = rows
        self.sync(list(rows), self._cells, None if changes.reset else rows)

    def _cells(self, key: str) -> Cells:
        request = self._rows.get(key)
        if request is None:
            return _blank(len(self.COLUMNS))
        streaming = request.ttft_ms is not None
        return (
            Text(request.model, style="bold"),
            Text(request.neuron or "-", style="" if request.neuron else "dim"),
            Text(fmt.dialect(request.endpoint)),
            cells.request_state(request),
            Text(fmt.rate(request.tokens_per_s) if streaming else "-"),
            Text(fmt.millis(request.ttft_ms)),
            Text(str(request.tokens) if streaming else "-"),
            Text(fmt.duration(request.age_s)),
            Text(request.id, style="dim"),
        )
