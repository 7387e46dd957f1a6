"""The command palette (ctrl+p): every action of the console, by name."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from cortex.console.app import CortexConsole
    from cortex.console.client import Action

Command = tuple[str, Callable[[], object], str]


def fleet_commands(app: CortexConsole) -> list[Command]:
    state = app.state
    commands: list[Command] = [
        ("Help: keys and colours", app.action_help, "the same as ?"),
        ("Filter neurons and models", app.action_filter, "the same as /"),
        ("View: nodes", partial(app.action_view, "nodes"), "the top pane shows the nodes (1)"),
        ("View: requests", partial(app.action_view, "requests"), "requests in flight (2)"),
    ]
    for name in sorted(state.neurons):
        commands.append(
            (f"Details: neuron {name}", partial(app.show_details, ("neuron", name)), "")
        )
    for model in sorted(state.catalogue):
        commands.append(
            (f"Details: model {model}", partial(app.show_details, ("catalogue", model)), "")
        )
    for model, neuron in sorted(state.placements):
        target = ("model", (model, neuron))
        commands.append((f"Details: {model} on {neuron}", partial(app.show_details, target), ""))
    if app.readonly:
        return commands
    commands.append(("Load a model…", app.action_load, "pick a model and a target (l)"))
    for model in sorted(state.catalogue):
        commands.append(
            (f"Load {model}", partial(app.request_action, "load", model, None), "auto placement")
        )
        for neuron in state.catalogue[model].available_on:
            commands.append(
                (
                    f"Load {model} on {neuron}",
                    partial(app.request_action, "load", model, neuron),
                    "",
                )
            )
    for model, neuron in sorted(state.placements):
        commands.append(
            (
                f"Unload {model} from {neuron}",
                partial(app.confirm_unload, (model, neuron)),
                "asks first (u)",
            )
        )
    models = sorted(set(state.catalogue) | {m for m, _ in state.placements})
    for model in models:
        action: Action = "unpin" if state.is_pinned(model) else "pin"
        commands.append(
            (
                f"{action.capitalize()} {model}",
                partial(app.request_action, action, model, None),
                "pinned models are never evicted (p)",
            )
        )
        commands.append(
            (f"Replicas of {model}…", partial(app.ask_replicas, model), "min and max (r)")
        )
    return commands


class FleetCommands(Provider):
    async def discover(self) -> Hits:
        for title, callback, help_text in fleet_commands(self.app):  # type: ignore[arg-type]
            yield DiscoveryHit(title, callback, help=help_text or None)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, callback, help_text in fleet_commands(self.app):  # type: ignore[arg-type]
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), callback, help=help_text or None)
