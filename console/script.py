"""``cortex-console --json``: one query or action, one JSON document, an exit code.

stdout carries only the document; errors go to stderr as
``{"error": {"message", "type", "code", "status"}}``. Exit codes:

- 0: done
- 1: the gateway refused (HTTP error) or the action did not succeed
- 2: bad command line (argparse)
- 3: the gateway could not be reached, timed out or answered something unreadable
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

import msgspec

from cortex.common.fleet import ActionResult, FleetSnapshot
from cortex.console.client import Action, FleetClient, GatewayError
from cortex.console.format import percent
from cortex.console.summary import summarize

QUERIES = ("status", "nodes", "models", "gpus")

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_UNREACHABLE = 3

_encoder = msgspec.json.Encoder()


def status_document(snapshot: FleetSnapshot, gateway: str) -> dict[str, Any]:
    s = summarize(snapshot.neurons, snapshot.placements, len(snapshot.catalogue))
    return {
        "gateway": gateway,
        "time": snapshot.time,
        "neurons": {"up": s.neurons_up, "total": s.neurons_total},
        "devices": {"gpus": s.gpus, "cpus": s.cpus},
        "vram": {"used": s.vram_used, "total": s.vram_total},
        "ram": {"used": s.ram_used, "total": s.ram_total},
        "tokens_per_s": s.tokens_per_s,
        "in_flight": s.in_flight,
        "queued": s.queued,
        "models": {
            "loaded": s.models_loaded,
            "loading": s.models_loading,
            "failed": s.models_failed,
            "catalogue": s.models_available,
        },
    }


def nodes_document(snapshot: FleetSnapshot) -> list[dict[str, Any]]:
    nodes = []
    for neuron in snapshot.neurons:
        node = msgspec.to_builtins(neuron)
        node["models"] = [p.model for p in snapshot.placements if p.neuron == neuron.name]
        nodes.append(node)
    return nodes


def models_document(snapshot: FleetSnapshot) -> list[dict[str, Any]]:
    """The catalogue, each entry with its placements (live figures included)."""
    by_model: dict[str, list[Any]] = {}
    for placement in snapshot.placements:
        by_model.setdefault(placement.model, []).append(msgspec.to_builtins(placement))
    models = []
    for entry in snapshot.catalogue:
        model = msgspec.to_builtins(entry)
        model["placements"] = by_model.pop(entry.id, [])
        models.append(model)
    # A placement the catalogue does not list yet (a load racing the catalogue update).
    for model_id, placements in by_model.items():
        models.append({"id": model_id, "placements": placements})
    return models


def gpus_document(snapshot: FleetSnapshot) -> list[dict[str, Any]]:
    """Every device of every neuron; CPU devices are included with ``kind: "cpu"``."""
    devices = []
    for neuron in snapshot.neurons:
        for device in neuron.devices:
            row = {"neuron": neuron.name, "neuron_up": neuron.up}
            row.update(msgspec.to_builtins(device))
            row["memory_percent"] = round(percent(device.memory_used, device.memory_total), 2)
            devices.append(row)
    return devices


def query_document(query: str, snapshot: FleetSnapshot, gateway: str) -> Any:
    if query == "status":
        return status_document(snapshot, gateway)
    if query == "nodes":
        return nodes_document(snapshot)
    if query == "models":
        return models_document(snapshot)
    if query == "gpus":
        return gpus_document(snapshot)
    raise ValueError(f"unknown query {query!r}; expected one of {', '.join(QUERIES)}")


def run(
    command: str,
    *,
    gateway: str,
    token: str | None,
    model: str | None = None,
    neuron: str | None = None,
    wait: bool = True,
    force: bool = False,
    replicas: tuple[int, int] | None = None,
    timeout: float = 10.0,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run one query or action; print the document; return the exit code."""
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    try:
        with FleetClient(gateway, token, timeout=timeout) as client:
            if command in QUERIES:
                document = query_document(command, client.snapshot(), client.base_url)
                _print(stdout, document)
                return EXIT_OK
            if command == "replicas":
                assert replicas is not None
                result: ActionResult = client.set_replicas(model or "", *replicas)
            else:
                result = client.act(_action(command), model or "", neuron, wait=wait, force=force)
    except GatewayError as exc:
        _print(stderr, exc.to_json())
        return EXIT_UNREACHABLE if exc.status is None else EXIT_REFUSED
    _print(stdout, result)
    if not result.ok:
        failure = GatewayError(result.message, type="action_failed", code=f"{command}_failed")
        _print(stderr, failure.to_json())
        return EXIT_REFUSED
    return EXIT_OK


def _action(command: str) -> Action:
    if command in ("load", "unload", "pin", "unpin"):
        return command  # type: ignore[return-value]
    raise ValueError(f"unknown command {command!r}")


def _print(stream: TextIO, document: Any) -> None:
    """Compact JSON for pipes, indented for a person at a terminal."""
    text = _encoder.encode(document)
    if stream.isatty():
        text = msgspec.json.format(text, indent=2)
    stream.write(text.decode() + "\n")
    stream.flush()
