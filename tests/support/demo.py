"""``make demo``'s launcher (``python -m cortex.services.demo_fleet --no-console``) on free
ports, for the demo test and the Claude Code benchmark."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from support.ports import free_port


@dataclass
class DemoLauncher:
    process: subprocess.Popen
    ports: list[int]  # gateway, metrics, neuron alpha, neuron beta

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.ports[0]}"


def launch_demo(root: Path) -> DemoLauncher:
    """Start the demo fleet in ``root`` (its stdout is piped: read it for readiness)."""
    ports = [free_port() for _ in range(4)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cortex.services.demo_fleet",
            "--no-console",
            "--dir",
            str(root),
            "--gateway-port",
            str(ports[0]),
            "--metrics-port",
            str(ports[1]),
            "--neuron-ports",
            f"{ports[2]},{ports[3]}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    return DemoLauncher(process, ports)
