"""Start a real ``cortex-gateway`` for a test, and drive it.

    from support.gateway import start_gateway

    with start_gateway(tmp_path, neurons={"a": neuron.url}) as gateway:
        gateway.wait_neurons_up()                    # the gateway has seen every neuron
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="x")
        ...

``start_gateway`` writes a cortex.toml (and a models.toml when ``models`` is given) into
``work_dir``, starts the gateway on free loopback ports (API and metrics), waits for
``/health``, and stops it at the end (SIGTERM, then SIGKILL). ``config`` adds or
overrides sections of cortex.toml, e.g. ``{"auth": {"api_keys": ["k"]}, "eviction":
{"strategy": "priority"}}``. The state file is ``work_dir / "gateway-state.json"``
unless ``config`` names another, so starting again on the same ``work_dir`` is a
restart that keeps API pins. The log is ``work_dir / "gateway.log"`` (``log_text()``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from support.ports import free_port
from support.processes import DaemonProcess, spawn, terminate, wait_healthy
from support.toml_writer import toml_text

STARTUP_TIMEOUT_S = 30.0


@dataclass(kw_only=True)
class GatewayProcess(DaemonProcess):
    LOG_NAME = "gateway.log"
    WAIT_TIMEOUT_S = 60.0
    metrics_url: str

    def fleet(self) -> dict[str, Any]:
        response = self.get("/fleet")
        response.raise_for_status()
        return response.json()

    def placements(self, model: str | None = None) -> list[dict[str, Any]]:
        return [p for p in self.fleet()["placements"] if model is None or p["model"] == model]

    def metrics(self) -> str:
        return httpx.get(self.metrics_url + "/metrics", timeout=10).text

    def wait_neurons_up(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        """Wait until the gateway has a status from each neuron (all configured by default)."""

        def up() -> bool:
            neurons = self.fleet()["neurons"]
            wanted = names or [n["name"] for n in neurons]
            state = {n["name"]: n["up"] for n in neurons}
            return all(state.get(name) for name in wanted)

        self.wait_for(up, timeout=timeout)

    def stop(self) -> None:
        terminate(self.process)


def write_config(
    work_dir: Path,
    *,
    neurons: dict[str, str],
    port: int,
    metrics_port: int,
    models: list[dict[str, Any]] | None = None,
    config: dict[str, dict[str, Any]] | None = None,
) -> Path:
    gateway: dict[str, Any] = {
        "listen": f"127.0.0.1:{port}",
        "metrics_listen": f"127.0.0.1:{metrics_port}",
        "state_file": str(work_dir / "gateway-state.json"),
        "keepalive_interval_s": 0.5,
        "connect_timeout_s": 2.0,
        "log_level": "info",
    }
    if models is not None:
        (work_dir / "models.toml").write_text(toml_text({"models": models}), encoding="utf-8")
        gateway["models_file"] = "models.toml"
    tables: dict[str, Any] = {
        "gateway": gateway,
        "health": {"interval_s": 0.5, "missed_beats": 2, "timeout_s": 2.0},
        "eviction": {"sweep_interval_s": 1.0},
    }
    for section, values in (config or {}).items():
        if isinstance(values, dict):
            tables.setdefault(section, {}).update(values)
        else:
            tables[section] = values
    tables["neurons"] = [{"name": name, "endpoint": url} for name, url in neurons.items()]
    if "neurons" in (config or {}):
        tables["neurons"] = config["neurons"]  # type: ignore[index]
    path = work_dir / "cortex.toml"
    path.write_text(toml_text(tables), encoding="utf-8")
    return path


@contextlib.contextmanager
def start_gateway(
    work_dir: Path,
    *,
    neurons: dict[str, str],
    models: list[dict[str, Any]] | None = None,
    config: dict[str, Any] | None = None,
    token: str = "",
    env: dict[str, str] | None = None,
) -> Iterator[GatewayProcess]:
    """A running gateway over ``neurons`` (name -> URL); see the module docstring.

    ``token`` is what ``get``/``post`` send (an API key or the admin token).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    port, metrics_port = free_port(), free_port()
    path = write_config(
        work_dir,
        neurons=neurons,
        port=port,
        metrics_port=metrics_port,
        models=models,
        config=config,
    )
    process = spawn("cortex.services.gateway.cli", path, work_dir / "gateway.log", env)
    gateway = GatewayProcess(
        url=f"http://127.0.0.1:{port}",
        metrics_url=f"http://127.0.0.1:{metrics_port}",
        work_dir=work_dir,
        process=process,
        token=token,
    )
    try:
        wait_healthy("cortex-gateway", process, gateway.url, gateway.log_text, STARTUP_TIMEOUT_S)
        yield gateway
    finally:
        gateway.stop()
