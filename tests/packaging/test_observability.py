"""packaging/prometheus and packaging/grafana: valid, tested alerts, and no query for a
metric that the gateway or a neuron does not export."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron

PACKAGING = Path(__file__).resolve().parents[2] / "packaging"
PROMETHEUS = PACKAGING / "prometheus"
GRAFANA = PACKAGING / "grafana"

needs_promtool = pytest.mark.skipif(
    shutil.which("promtool") is None,
    reason="promtool is not installed (Debian/Ubuntu: apt-get install prometheus)",
)


@needs_promtool
@pytest.mark.parametrize(
    "command",
    [
        ["check", "config", "prometheus.yml"],
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts_test.yml"],
    ],
)
def test_promtool_accepts_the_config_and_every_alert_fires_when_it_should(command):
    result = subprocess.run(["promtool", *command], cwd=PROMETHEUS, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dashboard_json_is_what_its_generator_writes():
    generator = subprocess.run(
        [
            sys.executable,
            "-c",
            "import runpy; print(runpy.run_path('build_dashboard.py')['render'](), end='')",
        ],
        cwd=GRAFANA,
        capture_output=True,
        text=True,
        check=True,
    )
    assert generator.stdout == (GRAFANA / "cortex-fleet.json").read_text(), (
        "cortex-fleet.json is stale: run python packaging/grafana/build_dashboard.py"
    )


def queried_metrics() -> set[str]:
    dashboard = json.loads((GRAFANA / "cortex-fleet.json").read_text())
    expressions = [
        target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])
    ]
    expressions += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    expressions.append((PROMETHEUS / "alerts.yml").read_text())
    return {name for text in expressions for name in re.findall(r"\bcortex_[a-z_]+", text)}


def exported_series_names(metrics_text: str) -> set[str]:
    names = set()
    for kind_line in re.findall(r"^# TYPE (\S+) (\S+)$", metrics_text, re.MULTILINE):
        name, kind = kind_line
        names.add(name)
        if kind == "counter":
            names |= {name + "_total", name + "_created"}
        elif kind == "histogram":
            names |= {name + suffix for suffix in ("_bucket", "_sum", "_count", "_created")}
    return names


@pytest.mark.slow
def test_every_queried_metric_is_exported(demo_models, tmp_path):
    with (
        start_neuron(demo_models.root, tmp_path / "neuron") as neuron,
        start_gateway(tmp_path / "gateway", neurons={"a": neuron.url}) as gateway,
    ):
        gateway.wait_neurons_up()
        reply = gateway.post(
            "/v1/chat/completions",
            json={
                "model": "demo-tiny",
                "max_tokens": 4,
                "messages": [{"role": "user", "content": "hi"}],
            },
        )
        assert reply.status_code == 200, reply.text
        exported = exported_series_names(gateway.metrics() + neuron.get("/metrics").text)
    missing = queried_metrics() - exported
    assert not missing, f"queried but not exported: {sorted(missing)}"
    assert len(queried_metrics()) >= 15
