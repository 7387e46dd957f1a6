"""Start, wait for and stop a cortex daemon as a real subprocess (used by the launchers)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import httpx


@dataclass(kw_only=True)
class DaemonProcess:
    """A daemon started for a test: its URL, its work folder (config, log) and process."""

    LOG_NAME: ClassVar[str]
    WAIT_TIMEOUT_S: ClassVar[float]
    url: str
    work_dir: Path
    process: subprocess.Popen
    token: str = ""  # sent by client()/get()/post()

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def client(self, timeout: float = 120.0, token: str | None = None) -> httpx.Client:
        """An httpx client on the daemon's URL, with the token when one is set."""
        token = self.token if token is None else token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        with self.client() as client:
            return client.get(path, **kwargs)

    def post(self, path: str, json: Any = None, **kwargs: Any) -> httpx.Response:
        with self.client() as client:
            return client.post(path, json=json, **kwargs)

    def log_text(self) -> str:
        path = self.work_dir / self.LOG_NAME
        return path.read_text(errors="replace") if path.exists() else ""

    def wait_for(
        self, predicate: Callable[[], Any], timeout: float | None = None, interval: float = 0.05
    ) -> Any:
        """Poll ``predicate()`` until it returns something truthy, or fail at the deadline
        with the end of the daemon's log."""
        timeout = self.WAIT_TIMEOUT_S if timeout is None else timeout
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"condition not met within {timeout}s\n--- {self.LOG_NAME} ---\n"
                    f"{self.log_text()[-4000:]}"
                )
            time.sleep(interval)


def spawn(module: str, config: Path, log: Path, env: dict[str, str] | None) -> subprocess.Popen:
    """``python -m module --config config``, its output appended to ``log``."""
    with log.open("ab") as output:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            [sys.executable, "-m", module, "--config", str(config)],
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )


def wait_healthy(
    name: str, process: subprocess.Popen, url: str, log_text: Callable[[], str], timeout: float
) -> None:
    """Poll ``url/health`` until it answers 200; fail with the daemon's log otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with {process.returncode}:\n{log_text()}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/health", timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not answer /health in time:\n{log_text()}")


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM, then SIGKILL if it has not exited within 10 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
