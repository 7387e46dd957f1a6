"""systemd readiness: tell the service manager when the HTTP port answers.

The units in packaging/systemd use ``Type=notify``; the daemons call
:func:`notify_ready` once their server has started listening. Outside systemd
(``NOTIFY_SOCKET`` unset) these are no-ops.
"""

from __future__ import annotations

import os
import socket


def notify(state: str) -> bool:
    """Send ``state`` (e.g. ``"READY=1"``) to systemd; False when not under systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):  # abstract namespace socket
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError:
        return False
    return True


def notify_ready(status: str = "") -> bool:
    message = "READY=1" + (f"\nSTATUS={status}" if status else "")
    return notify(message)


def notify_when_started(server, status: str) -> None:
    """Make a ``uvicorn.Server`` send READY=1 once its sockets listen."""
    original_startup = server.startup

    async def startup(sockets=None):
        await original_startup(sockets=sockets)
        if server.started:
            notify_ready(status)

    server.startup = startup
