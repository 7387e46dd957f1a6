"""The load dialog: pick a model from the catalogue and a target neuron (or auto)."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, OptionList, Static
from textual.widgets.option_list import Option

from cortex.common.fleet import CatalogueEntry, FleetNeuron
from cortex.console import format as fmt

AUTO = "__auto__"


@dataclass(frozen=True, slots=True)
class LoadChoice:
    model: str
    neuron: str | None  # None: the scheduler places it


def model_prompt(entry: CatalogueEntry) -> Text:
    text = Text(entry.id, style="bold")
    details = []
    if entry.available_on:
        details.append(f"on disk: {', '.join(entry.available_on)}")
    if entry.loaded_on:
        details.append(f"loaded on: {', '.join(entry.loaded_on)}")
    if entry.memory_estimate:
        details.append(f"~{fmt.human_bytes(entry.memory_estimate)}")
    if details:
        text.append("\n  " + " · ".join(details), style="dim")
    if entry.pinned:
        text.append("  pinned", style="bold blue")
    return text


def neuron_prompt(neuron: FleetNeuron, entry: CatalogueEntry | None) -> Text:
    text = Text(neuron.name, style="bold" if neuron.up else "dim")
    if not neuron.up:
        text.append("  down", style="red")
    elif entry is not None and neuron.name in entry.loaded_on:
        text.append("  loaded here", style="cyan")
    elif entry is not None and neuron.name in entry.available_on:
        text.append("  has it on disk", style="green")
    elif entry is not None:
        text.append("  not on disk", style="dim")
    return text


class LoadScreen(ModalScreen[LoadChoice | None]):
    """Enter (or the Load button) loads the highlighted model on the highlighted target."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        catalogue: list[CatalogueEntry],
        neurons: list[FleetNeuron],
        model: str | None = None,
    ) -> None:
        super().__init__()
        self.catalogue = {entry.id: entry for entry in catalogue}
        self.neurons = sorted(neurons, key=lambda n: n.name)
        self.initial_model = model

    def compose(self) -> ComposeResult:
        with Vertical(id="load-dialog", classes="dialog"):
            yield Label("Load a model", classes="dialog-title")
            if not self.catalogue:
                yield Static(
                    "The catalogue is empty: no neuron reports a model on disk and "
                    "models.toml lists none.",
                    id="load-empty",
                )
            with Horizontal(id="load-lists"):
                with Vertical(id="load-models-pane"):
                    yield Label("Model", classes="dialog-label")
                    yield OptionList(
                        *[Option(model_prompt(e), id=e.id) for e in self.catalogue.values()],
                        id="load-models",
                    )
                with Vertical(id="load-neurons-pane"):
                    yield Label("Target", classes="dialog-label")
                    options = [Option(Text("auto: the scheduler places it"), id=AUTO)]
                    options += [Option(neuron_prompt(n, None), id=n.name) for n in self.neurons]
                    yield OptionList(*options, id="load-neurons")
            with Horizontal(classes="dialog-buttons"):
                yield Button(
                    "Load", variant="primary", id="load-confirm", disabled=not self.catalogue
                )
                yield Button("Cancel", id="load-cancel")

    def on_mount(self) -> None:
        models = self.query_one("#load-models", OptionList)
        neurons = self.query_one("#load-neurons", OptionList)
        neurons.highlighted = 0
        if self.catalogue:
            index = 0
            if self.initial_model in self.catalogue:
                index = models.get_option_index(self.initial_model)
            models.highlighted = index
            self._annotate_neurons()
        models.focus()

    @property
    def selected_model(self) -> str | None:
        option = self.query_one("#load-models", OptionList).highlighted_option
        return option.id if option else None

    @property
    def selected_neuron(self) -> str | None:
        option = self.query_one("#load-neurons", OptionList).highlighted_option
        return None if option is None or option.id == AUTO else option.id

    def select(self, model: str, neuron: str | None = None) -> None:
        """Highlight a model and a target by name (tests and the command palette)."""
        models = self.query_one("#load-models", OptionList)
        models.highlighted = models.get_option_index(model)
        neurons = self.query_one("#load-neurons", OptionList)
        neurons.highlighted = neurons.get_option_index(neuron or AUTO)
        self._annotate_neurons()

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        if event.option_list.id == "load-models":
            self._annotate_neurons()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        if event.option_list.id == "load-models":
            # Enter on a model moves on to the target; Enter there loads.
            self.query_one("#load-neurons", OptionList).focus()
        else:
            self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "load-confirm":
            self._submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _annotate_neurons(self) -> None:
        entry = self.catalogue.get(self.selected_model or "")
        neurons = self.query_one("#load-neurons", OptionList)
        for neuron in self.neurons:
            neurons.replace_option_prompt(neuron.name, neuron_prompt(neuron, entry))

    def _submit(self) -> None:
        model = self.selected_model
        if model is None:
            self.notify("Pick a model to load first.", severity="warning")
            return
        self.dismiss(LoadChoice(model, self.selected_neuron))
