"""Write cortex-fleet.json, the Grafana dashboard, from the panel list below.

    python packaging/grafana/build_dashboard.py

Edit the panels here, not the JSON; a test checks the JSON matches this script and that
every metric a query names is one the gateway or a neuron exports.
"""

from __future__ import annotations

import json
from pathlib import Path

OUT = Path(__file__).with_name("cortex-fleet.json")
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
MODEL = 'model=~"$model"'

# (title, [(expr, legend)], unit, kind) per row; kind is "stat" or "timeseries".
ROWS = [
    (
        "Fleet overview",
        [
            ("Neurons up", [("sum(cortex_gateway_neuron_up)", "up")], "none", "stat"),
            (
                "Requests / s",
                [("sum(rate(cortex_gateway_requests_total[5m]))", "requests/s")],
                "reqps",
                "stat",
            ),
            (
                "In flight",
                [("sum(cortex_gateway_requests_in_flight)", "in flight")],
                "none",
                "stat",
            ),
            ("Queued", [("sum(cortex_gateway_requests_queued)", "queued")], "none", "stat"),
            (
                "Decode tok/s (fleet)",
                [("sum(cortex_neuron_tokens_per_second)", "tok/s")],
                "none",
                "stat",
            ),
            (
                "Models loaded",
                [("sum(cortex_neuron_model_loaded)", "loaded")],
                "none",
                "stat",
            ),
        ],
    ),
    (
        "GPUs",
        [
            (
                "VRAM used per GPU",
                [
                    (
                        'cortex_gateway_device_memory_used_bytes{neuron=~"$neuron"}',
                        "{{neuron}} {{device}}",
                    )
                ],
                "bytes",
                "timeseries",
            ),
            (
                "VRAM used / total",
                [
                    (
                        'cortex_gateway_device_memory_used_bytes{neuron=~"$neuron"}'
                        ' / cortex_gateway_device_memory_total_bytes{neuron=~"$neuron"}',
                        "{{neuron}} {{device}}",
                    )
                ],
                "percentunit",
                "timeseries",
            ),
            (
                "Memory per model",
                [
                    (
                        "sum by (model, device) (cortex_neuron_model_memory_bytes)",
                        "{{model}} {{device}}",
                    )
                ],
                "bytes",
                "timeseries",
            ),
            (
                "GPU utilisation",
                [("cortex_neuron_device_utilization_percent", "{{instance}} {{device}}")],
                "percent",
                "timeseries",
            ),
        ],
    ),
    (
        "Models",
        [
            (
                "Decode tok/s per model",
                [(f"sum by (model) (cortex_neuron_tokens_per_second{{{MODEL}}})", "{{model}}")],
                "none",
                "timeseries",
            ),
            (
                "Completion tokens / s",
                [
                    (
                        "sum by (model) "
                        f"(rate(cortex_gateway_completion_tokens_total{{{MODEL}}}[5m]))",
                        "{{model}}",
                    )
                ],
                "none",
                "timeseries",
            ),
            (
                "TTFT (gateway, incl. queue and cold load)",
                [
                    (
                        f"histogram_quantile({q}, sum by (le, model) "
                        f"(rate(cortex_gateway_time_to_first_token_seconds_bucket{{{MODEL}}}[5m])))",
                        f"p{int(q * 100)} {{{{model}}}}",
                    )
                    for q in (0.5, 0.95)
                ],
                "s",
                "timeseries",
            ),
            (
                "Request latency",
                [
                    (
                        f"histogram_quantile({q}, sum by (le, model) "
                        f"(rate(cortex_gateway_request_duration_seconds_bucket{{{MODEL}}}[5m])))",
                        f"p{int(q * 100)} {{{{model}}}}",
                    )
                    for q in (0.5, 0.95, 0.99)
                ],
                "s",
                "timeseries",
            ),
            (
                "Requests by status",
                [
                    (
                        f"sum by (status) (rate(cortex_gateway_requests_total{{{MODEL}}}[5m]))",
                        "{{status}}",
                    )
                ],
                "reqps",
                "timeseries",
            ),
            (
                "In flight and queued",
                [
                    (
                        f"sum by (model) (cortex_gateway_requests_in_flight{{{MODEL}}})",
                        "in flight {{model}}",
                    ),
                    (
                        f"sum by (model) (cortex_gateway_requests_queued{{{MODEL}}})",
                        "queued {{model}}",
                    ),
                ],
                "none",
                "timeseries",
            ),
        ],
    ),
    (
        "Loads and evictions",
        [
            (
                "Loads",
                [
                    (
                        "sum by (model, result) "
                        "(increase(cortex_gateway_loads_total[$__rate_interval]))",
                        "{{model}} {{result}}",
                    )
                ],
                "none",
                "timeseries",
            ),
            (
                "Load duration p95",
                [
                    (
                        "histogram_quantile(0.95, sum by (le, model) "
                        "(rate(cortex_gateway_load_duration_seconds_bucket[30m])))",
                        "{{model}}",
                    )
                ],
                "s",
                "timeseries",
            ),
            (
                "Evictions by reason",
                [
                    (
                        "sum by (reason) "
                        "(increase(cortex_gateway_evictions_total[$__rate_interval]))",
                        "{{reason}}",
                    )
                ],
                "none",
                "timeseries",
            ),
            (
                "Upstream retries",
                [
                    (
                        "sum by (neuron) "
                        "(increase(cortex_gateway_upstream_retries_total[$__rate_interval]))",
                        "{{neuron}}",
                    )
                ],
                "none",
                "timeseries",
            ),
        ],
    ),
]


def panel(panel_id: int, title: str, targets, unit: str, kind: str, x: int, y: int, w: int):
    return {
        "id": panel_id,
        "type": kind,
        "title": title,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": w, "h": 4 if kind == "stat" else 8},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {"reduceOptions": {"calcs": ["lastNotNull"]}} if kind == "stat" else {},
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": expr,
                "legendFormat": legend,
            }
            for i, (expr, legend) in enumerate(targets)
        ],
    }


def variable(name: str, query: str) -> dict:
    return {
        "name": name,
        "type": "query",
        "datasource": DATASOURCE,
        "query": {"query": query, "refId": name},
        "definition": query,
        "includeAll": True,
        "multi": True,
        "allValue": ".*",
        "current": {"text": "All", "value": "$__all"},
        "refresh": 2,
    }


def dashboard() -> dict:
    panels, next_id, y = [], 1, 0
    for row_title, row_panels in ROWS:
        panels.append(
            {
                "id": next_id,
                "type": "row",
                "title": row_title,
                "collapsed": False,
                "gridPos": {"x": 0, "y": y, "w": 24, "h": 1},
                "panels": [],
            }
        )
        next_id, y = next_id + 1, y + 1
        width = 24 // len(row_panels) if row_panels[0][3] == "stat" else 12
        x = 0
        for title, targets, unit, kind in row_panels:
            panels.append(panel(next_id, title, targets, unit, kind, x, y, width))
            next_id += 1
            x += width
            if x >= 24:
                x, y = 0, y + (4 if kind == "stat" else 8)
        if x:
            y += 8
    return {
        "title": "cortex fleet",
        "uid": "cortex-fleet",
        "tags": ["cortex", "llm"],
        "timezone": "browser",
        "schemaVersion": 39,
        "version": 1,
        "refresh": "10s",
        "time": {"from": "now-1h", "to": "now"},
        "templating": {
            "list": [
                {
                    "name": "datasource",
                    "type": "datasource",
                    "query": "prometheus",
                    "current": {},
                    "label": "Prometheus",
                },
                variable("neuron", "label_values(cortex_gateway_neuron_up, neuron)"),
                variable("model", "label_values(cortex_gateway_requests_total, model)"),
            ]
        },
        "panels": panels,
    }


def render() -> str:
    return json.dumps(dashboard(), indent=2) + "\n"


if __name__ == "__main__":
    OUT.write_text(render())
    print(f"wrote {OUT}")
