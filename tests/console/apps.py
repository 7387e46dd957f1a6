"""The console app over a fixed fleet, for the tests that drive it without a gateway."""

from __future__ import annotations

from conftest import small_fleet_state
from fleets import T0

from cortex.console.app import CortexConsole

SIZE = (140, 42)  # the terminal every pilot and snapshot test draws into
GATEWAY = "http://gateway.test:31313"


def console(state=None, **kwargs) -> CortexConsole:
    """The app over ``state`` (the small fleet by default), its clock frozen at T0."""
    return CortexConsole(
        gateway=GATEWAY,
        state=state or small_fleet_state(),
        clock=lambda: T0,
        follow=False,
        **kwargs,
    )


def cell(table, row_key: str, column: str) -> str:
    return table.get_cell(row_key, column).plain
