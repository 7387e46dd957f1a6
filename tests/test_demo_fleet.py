"""Command 1 (`make demo`): the launcher brings up a real fleet and Ctrl-C stops all of it."""

from __future__ import annotations

import signal
import time

import httpx
import psutil
import pytest
from support.demo import launch_demo

pytestmark = pytest.mark.slow


def test_demo_fleet_comes_up_answers_and_stops_everything_on_ctrl_c(demo_models, tmp_path):
    (tmp_path / "models").mkdir()
    for model in ("demo-tiny", "demo-small", "demo-long"):  # skip generating them again
        (tmp_path / "models" / model).symlink_to(demo_models.root / model)
    demo = launch_demo(tmp_path)
    launcher = demo.process
    lines = []
    deadline = time.monotonic() + 240
    try:
        for line in launcher.stdout:
            lines.append(line)
            if "Ctrl-C stops the fleet" in line or time.monotonic() > deadline:
                break
        output = "".join(lines)
        assert "neuron alpha: up (cpu)" in output, output
        assert "neuron beta: up (cpu)" in output, output
        assert "demo-tiny on alpha: loaded" in output, output
        assert "usage: {'prompt_tokens'" in output, output
        # Claude Code's names reach demo-long with its whole context, as the README says.
        claude = httpx.get(f"{demo.gateway_url}/v1/models/claude-sonnet-4-5").json()
        assert claude["cortex"] == {"state": "alias", "alias_of": "demo-long"}
        long = httpx.get(f"{demo.gateway_url}/v1/models/demo-long").json()
        assert long["cortex"]["max_seq_len"] == 131072
        family = psutil.Process(launcher.pid).children(recursive=True)
        assert len(family) >= 4  # two neurons, the gateway, at least one model worker
    finally:
        launcher.send_signal(signal.SIGINT)
        rest = launcher.communicate(timeout=60)[0]
    assert launcher.returncode == 0
    # Only the demo models: never the multi-GB GPU benchmark shapes.
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == [
        "demo-long",
        "demo-small",
        "demo-tiny",
    ]
    assert "stopped gateway" in rest and "stopped alpha" in rest and "stopped beta" in rest
    _, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], [p.pid for p in alive]
