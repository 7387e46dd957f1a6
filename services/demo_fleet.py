"""A local demo fleet: two CPU neurons and a gateway on loopback, then the console.

    python -m cortex.services.demo_fleet [--dir run/demo] [--no-console]

Generates the demo models (once), writes configs for neuron ``alpha`` (demo-tiny and
demo-small on disk), neuron ``beta`` (demo-small) and the gateway, starts all three,
loads demo-tiny, and opens ``cortex-console``. Without a terminal (or with
``--no-console``) it prints the fleet status and a sample chat completion instead and
runs until interrupted. Ctrl-C (or quitting the console) stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from cortex.services.neuron.demo import DEMO_SIZES, default_name, generate

READY_TIMEOUT_S = 90.0


@dataclass
class Fleet:
    root: Path
    gateway_port: int
    metrics_port: int
    neuron_ports: tuple[int, int]
    budget: str
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def neuron_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.neuron_ports[index]}"


def prepare(fleet: Fleet) -> dict[str, Path]:
    """Models on disk and one config file per process; returns the configs."""
    models = fleet.root / "models"
    for size in DEMO_SIZES:
        target = models / default_name(size)
        if not (target / "model.safetensors").exists():
            print(f"generating {default_name(size)} ...", flush=True)
            generate(target, size)
    disks = {"alpha": ["demo-tiny", "demo-small", "demo-long"], "beta": ["demo-small"]}
    configs: dict[str, Path] = {}
    for index, (name, model_ids) in enumerate(disks.items()):
        models_dir = fleet.root / f"models-{name}"
        models_dir.mkdir(parents=True, exist_ok=True)
        for model_id in model_ids:
            link = models_dir / model_id
            if not link.exists():
                link.symlink_to(models / model_id, target_is_directory=True)
        configs[name] = write(
            fleet.root / f"neuron-{name}.toml",
            f"""[neuron]
name = "{name}"
listen = "127.0.0.1:{fleet.neuron_ports[index]}"
models_dir = "{models_dir}"
memory_budget = "{fleet.budget}"
""",
        )
    write(
        fleet.root / "models.toml",
        """[[models]]
id = "demo-small"
priority = 5
max_seq_len = 2048

# Coding agents send long prompts (Codex ~20k tokens, Claude Code 26k-70k) and ask for
# large max_tokens: its whole context, so they fit (claude-* below).
[[models]]
id = "demo-long"
max_seq_len = 131072
""",
    )
    configs["gateway"] = write(
        fleet.root / "cortex.toml",
        f"""[gateway]
listen = "127.0.0.1:{fleet.gateway_port}"
metrics_listen = "127.0.0.1:{fleet.metrics_port}"
models_file = "models.toml"
state_file = "{fleet.root / "gateway-state.json"}"

[[neurons]]
name = "alpha"
endpoint = "{fleet.neuron_url(0)}"

[[neurons]]
name = "beta"
endpoint = "{fleet.neuron_url(1)}"

[aliases]
"claude-*" = "demo-long"
""",
    )
    return configs


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def check_ports_free(fleet: Fleet) -> None:
    named = {
        "gateway": fleet.gateway_port,
        "gateway metrics": fleet.metrics_port,
        "neuron alpha": fleet.neuron_ports[0],
        "neuron beta": fleet.neuron_ports[1],
    }
    for what, port in named.items():
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                raise SystemExit(
                    f"demo: port {port} ({what}) is in use: is another cortex running? "
                    "Stop it, or pick other ports (see --help)."
                )


def start(fleet: Fleet, configs: dict[str, Path]) -> None:
    logs = fleet.root / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    bin_dir = Path(sys.executable).parent
    commands = {
        "alpha": [str(bin_dir / "cortex-neuron"), "--config", str(configs["alpha"])],
        "beta": [str(bin_dir / "cortex-neuron"), "--config", str(configs["beta"])],
        "gateway": [str(bin_dir / "cortex-gateway"), "--config", str(configs["gateway"])],
    }
    for name, command in commands.items():
        log = (logs / f"{name}.log").open("ab")
        # Own session: Ctrl-C in the terminal reaches this launcher, which then stops
        # the daemons in order, rather than every process at once.
        fleet.processes[name] = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    print(f"started neurons alpha, beta and the gateway (logs in {logs})", flush=True)


def wait_ready(fleet: Fleet) -> None:
    urls = {
        "alpha": fleet.neuron_url(0) + "/health",
        "beta": fleet.neuron_url(1) + "/health",
        "gateway": fleet.gateway_url + "/health",
    }
    deadline = time.monotonic() + READY_TIMEOUT_S
    with httpx.Client(timeout=2.0) as client:
        for name, url in urls.items():
            while True:
                process = fleet.processes[name]
                if process.poll() is not None:
                    code = process.returncode
                    raise SystemExit(f"demo: {name} exited ({code}):\n{log_tail(fleet, name)}")
                try:
                    if client.get(url).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit(f"demo: {name} did not answer {url}:\n{log_tail(fleet, name)}")
                time.sleep(0.2)
        while not all(n["up"] for n in client.get(fleet.gateway_url + "/fleet").json()["neurons"]):
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"demo: the gateway did not see both neurons up:\n{log_tail(fleet, 'gateway')}"
                )
            time.sleep(0.2)
    print(f"fleet ready: gateway at {fleet.gateway_url}", flush=True)


def log_tail(fleet: Fleet, name: str, lines: int = 30) -> str:
    path = fleet.root / "logs" / f"{name}.log"
    if not path.exists():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def warm_up(fleet: Fleet) -> None:
    """Load demo-tiny so the console has a model to show from the start."""
    print("loading demo-tiny ...", flush=True)
    response = httpx.post(fleet.gateway_url + "/fleet/models/demo-tiny/load", json={}, timeout=300)
    if response.status_code >= 400:
        print(f"demo: loading demo-tiny failed: {response.text}", file=sys.stderr)


def show_without_console(fleet: Fleet) -> None:
    status = httpx.get(fleet.gateway_url + "/fleet", timeout=10).json()
    print("fleet status:")
    for neuron in status["neurons"]:
        devices = ", ".join(d["id"] for d in neuron.get("devices", []))
        print(f"  neuron {neuron['name']}: {'up' if neuron['up'] else 'down'} ({devices})")
    for placement in status["placements"]:
        print(f"  {placement['model']} on {placement['neuron']}: {placement['state']}")
    request = {
        "model": "demo-tiny",
        "messages": [{"role": "user", "content": "Hello, fleet!"}],
        "max_tokens": 24,
        "seed": 1,
    }
    print("sample chat completion (the demo model has random weights, so it babbles):")
    reply = httpx.post(fleet.gateway_url + "/v1/chat/completions", json=request, timeout=120)
    body = reply.json()
    if reply.status_code == 200:
        print("  " + json.dumps(body["choices"][0]["message"]["content"], ensure_ascii=False))
        print(f"  usage: {body['usage']}")
    else:
        print(f"  error {reply.status_code}: {body}")
    print(
        f"\nTry: curl {fleet.gateway_url}/v1/models\n"
        f"  or: ANTHROPIC_BASE_URL={fleet.gateway_url} ANTHROPIC_AUTH_TOKEN=x claude -p hi\n"
        "Ctrl-C stops the fleet.",
        flush=True,
    )


def run_console(fleet: Fleet) -> None:
    console = Path(sys.executable).parent / "cortex-console"
    with subprocess.Popen([str(console), "--gateway", fleet.gateway_url]) as process:
        while True:
            try:
                process.wait()
                return
            except KeyboardInterrupt:
                continue  # the console handles Ctrl-C itself and exits


def stop(fleet: Fleet) -> None:
    # The gateway first, so it does not report the neurons' departure as failures.
    for name in ("gateway", "beta", "alpha"):
        process = fleet.processes.get(name)
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for name, process in fleet.processes.items():
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        print(f"stopped {name}", flush=True)


def interrupt(signum, frame) -> None:
    """SIGTERM (e.g. from a supervisor) stops the fleet the way Ctrl-C does."""
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m cortex.services.demo_fleet",
        description="Start a local demo fleet (two CPU neurons and a gateway) and its console.",
    )
    parser.add_argument("--dir", type=Path, default=Path("run/demo"), help="working folder")
    parser.add_argument("--no-console", action="store_true", help="print status instead")
    parser.add_argument("--gateway-port", type=int, default=31313)
    parser.add_argument("--metrics-port", type=int, default=31314)
    parser.add_argument(
        "--neuron-ports", default="13131,13132", help="ports of neurons alpha and beta"
    )
    parser.add_argument(
        "--budget", default="3GiB", help="memory each neuron may use for models (default 3GiB)"
    )
    args = parser.parse_args(argv)
    ports = args.neuron_ports.split(",")
    if len(ports) != 2 or not all(p.isdigit() for p in ports):
        parser.error("--neuron-ports takes two ports, e.g. 13131,13132")
    args.neuron_ports = (int(ports[0]), int(ports[1]))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    fleet = Fleet(
        root=args.dir.resolve(),
        gateway_port=args.gateway_port,
        metrics_port=args.metrics_port,
        neuron_ports=args.neuron_ports,
        budget=args.budget,
    )
    check_ports_free(fleet)
    configs = prepare(fleet)
    signal.signal(signal.SIGTERM, interrupt)
    try:
        start(fleet, configs)
        wait_ready(fleet)
        warm_up(fleet)
        if args.no_console or not sys.stdout.isatty():
            show_without_console(fleet)
            while all(p.poll() is None for p in fleet.processes.values()):
                time.sleep(0.5)
            print("demo: a daemon exited; stopping the fleet", file=sys.stderr)
        else:
            run_console(fleet)
    except KeyboardInterrupt:
        print("\nstopping the fleet ...", flush=True)
    finally:
        stop(fleet)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
