"""Start a real ``cortex-neuron`` for a test, and drive it.

    from support.neuron import start_neuron

    with start_neuron(demo_models.root, tmp_path) as neuron:
        neuron.load("demo-tiny")                      # waits until loaded
        client = openai.OpenAI(base_url=neuron.url + "/v1", api_key=neuron.token or "x")
        ...

``start_neuron`` writes a neuron.toml (models dir, memory budget, token, queue and
concurrency limits, anything else via ``settings``) into ``work_dir``, starts the daemon
on a free loopback port, waits for ``/health``, and at the end stops it and every
worker process it started (SIGTERM, then SIGKILL). The daemon's log goes to
``work_dir / "neuron.log"``; ``neuron.log_text()`` returns it (handy in assertion
messages). Works as a context manager inside fixtures of any scope.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from support.ports import free_port
from support.processes import DaemonProcess, spawn, terminate, wait_healthy
from support.toml_writer import toml_text

STARTUP_TIMEOUT_S = 60.0
LOAD_TIMEOUT_S = 180.0


@dataclass(kw_only=True)
class NeuronProcess(DaemonProcess):
    LOG_NAME = "neuron.log"
    WAIT_TIMEOUT_S = 30.0
    port: int
    children: set[int] = field(default_factory=set)

    def kill(self) -> None:
        """SIGKILL the neuron and its workers, as a crash or power loss would."""
        process = psutil.Process(self.process.pid)
        children = process.children(recursive=True)
        process.send_signal(signal.SIGKILL)
        for child in children:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        self.process.wait(timeout=10)

    def status(self) -> dict[str, Any]:
        response = self.get("/status")
        response.raise_for_status()
        return response.json()

    # ------------------------------------------------------------------ models

    def load(self, model: str, timeout: float = LOAD_TIMEOUT_S, **options: Any) -> dict[str, Any]:
        """Load ``model`` (id or path) and wait until it is loaded; returns the LoadedModel."""
        with self.client(timeout=timeout) as client:
            response = client.post("/models/load", json={"model": model, **options})
        if response.status_code != 200:
            raise AssertionError(
                f"load of {model} failed: {response.status_code} {response.text}\n"
                f"--- neuron log ---\n{self.log_text()[-4000:]}"
            )
        loaded = response.json()
        if loaded.get("pid"):
            self.children.add(loaded["pid"])
        return loaded

    def unload(self, model: str) -> dict[str, Any]:
        response = self.post("/models/unload", json={"model": model})
        response.raise_for_status()
        return response.json()

    def loaded(self, model: str) -> dict[str, Any] | None:
        return next((m for m in self.status()["loaded"] if m["id"] == model), None)

    # ------------------------------------------------------------------ process

    def stop(self) -> None:
        """Stop the daemon and every process it started."""
        with contextlib.suppress(psutil.NoSuchProcess):
            self.children |= {c.pid for c in psutil.Process(self.process.pid).children(True)}
        terminate(self.process)
        for pid in self.children:
            with contextlib.suppress(psutil.NoSuchProcess, ProcessLookupError):
                proc = psutil.Process(pid)
                proc.kill()
                proc.wait(timeout=10)


def write_config(
    path: Path,
    *,
    models_dir: Path,
    port: int,
    token: str = "",
    settings: dict[str, Any] | None = None,
) -> Path:
    values: dict[str, Any] = {
        "name": "test-neuron",
        "listen": f"127.0.0.1:{port}",
        "models_dir": str(models_dir),
        "token": token,
        "prewarm_worker": False,
        "cpu_threads": 1,
        "log_level": "info",
    }
    values.update(settings or {})
    path.write_text(toml_text({"neuron": values}), encoding="utf-8")
    return path


@contextlib.contextmanager
def start_neuron(
    models_dir: Path,
    work_dir: Path,
    *,
    token: str = "",
    settings: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    port: int | None = None,
) -> Iterator[NeuronProcess]:
    """A running neuron on a free loopback port (see the module docstring).

    ``settings`` are extra ``[neuron]`` keys of neuron.toml, e.g.
    ``{"max_queue": 1, "max_concurrency": 1, "memory_budget": "4GiB"}``. Defaults for
    tests: no spare worker (``prewarm_worker = false``) and one torch thread per worker.
    ``port`` is for a neuron a gateway already expects there; by default a free one.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    port = port or free_port()
    config = write_config(
        work_dir / "neuron.toml", models_dir=models_dir, port=port, token=token, settings=settings
    )
    process = spawn("cortex.services.neuron.cli", config, work_dir / "neuron.log", env)
    neuron = NeuronProcess(
        url=f"http://127.0.0.1:{port}", port=port, token=token, work_dir=work_dir, process=process
    )
    try:
        wait_healthy("cortex-neuron", process, neuron.url, neuron.log_text, STARTUP_TIMEOUT_S)
        yield neuron
    finally:
        neuron.stop()
