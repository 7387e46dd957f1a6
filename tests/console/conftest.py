"""Console test fixtures.

A deterministic app over a fixed fleet (local time pinned to UTC) for snapshots and
Pilot tests without a gateway, and a real fleet (one CPU neuron, one gateway with an
admin token) for the end-to-end ``--json`` and Pilot tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fleets import SMALL_FLEET_HISTORY, T0, small_fleet, small_fleet_log, small_fleet_requests
from support.gateway import GatewayProcess, start_gateway
from support.neuron import NeuronProcess, start_neuron

from cortex.common.fleet import SnapshotEvent
from cortex.console.state import FleetState


@pytest.fixture
def utc():
    """Log and header clocks print local time; pin it so snapshots match anywhere."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


def small_fleet_state(*, connected: bool = True) -> FleetState:
    """The small fleet as the stream would leave it, with a tok/s history and a log."""
    state = FleetState()
    state.apply(SnapshotEvent(small_fleet()))
    state.apply(small_fleet_requests())
    for key, values in SMALL_FLEET_HISTORY.items():
        state.history[key].extend(values[:-1])
    state.sample(T0)  # the last sample: the placements' current tok/s
    for entry in small_fleet_log():
        state.add_log(entry)
    if connected:
        state.connected(T0 - 600)
    return state


@pytest.fixture
def fleet_state() -> FleetState:
    return small_fleet_state()


# --------------------------------------------------------------------------- real fleet

ADMIN_TOKEN = "console-admin-token"


@dataclass
class ConsoleFleet:
    """A real CPU neuron (demo-tiny and demo-small on disk) behind a real gateway."""

    neuron: NeuronProcess
    gateway: GatewayProcess
    token: str

    @property
    def url(self) -> str:
        return self.gateway.url

    def placements(self, model: str | None = None) -> list[dict]:
        return self.gateway.placements(model)

    def catalogue(self, model: str) -> dict:
        return next(e for e in self.gateway.fleet()["catalogue"] if e["id"] == model)

    def reset(self) -> None:
        """Nothing loaded, nothing pinned through the API: each test starts clean."""
        for entry in self.gateway.fleet()["catalogue"]:
            if entry.get("pinned") and entry.get("pin_source") == "api":
                self.gateway.post(f"/fleet/models/{entry['id']}/unpin").raise_for_status()
        for placement in self.placements():
            self.gateway.post(
                f"/fleet/models/{placement['model']}/unload",
                json={"neuron": placement["neuron"]},
                params={"force": "true"},
            )
        self.gateway.wait_for(lambda: not self.placements(), timeout=60)


@pytest.fixture(scope="session")
def console_fleet(demo_models, tmp_path_factory) -> Iterator[ConsoleFleet]:
    root = tmp_path_factory.mktemp("console-fleet")
    with (
        start_neuron(demo_models.root, root / "neuron") as neuron,
        start_gateway(
            root / "gateway",
            neurons={"local": neuron.url},
            config={"auth": {"admin_token": ADMIN_TOKEN}},
            token=ADMIN_TOKEN,
        ) as gateway,
    ):
        gateway.wait_neurons_up()
        yield ConsoleFleet(neuron=neuron, gateway=gateway, token=ADMIN_TOKEN)


@pytest.fixture
def fleet(console_fleet: ConsoleFleet) -> Iterator[ConsoleFleet]:
    console_fleet.reset()
    yield console_fleet
    console_fleet.reset()
