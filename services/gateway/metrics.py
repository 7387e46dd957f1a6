"""Prometheus metrics of the gateway, on their own registry and their own port.

Names follow the engines' style (``vllm:*``, ``gpustack:*``) under ``cortex_gateway_``:

==============================================  =========  ==============================
name                                            type       labels
==============================================  =========  ==============================
cortex_gateway_requests_total                   counter    model, neuron, endpoint, status
cortex_gateway_prompt_tokens_total              counter    model
cortex_gateway_completion_tokens_total          counter    model
cortex_gateway_time_to_first_token_seconds      histogram  model
cortex_gateway_request_duration_seconds         histogram  model
cortex_gateway_decode_tokens_per_second         histogram  model
cortex_gateway_requests_in_flight               gauge      model, neuron
cortex_gateway_requests_queued                  gauge      model
cortex_gateway_loads_total                      counter    model, neuron, result
cortex_gateway_load_duration_seconds            histogram  model
cortex_gateway_evictions_total                  counter    model, reason
cortex_gateway_upstream_retries_total           counter    neuron
cortex_gateway_replica_decisions_total          counter    model, direction, outcome, reason
cortex_gateway_replicas_wanted                  gauge      model
cortex_gateway_replicas_serving                 gauge      model
cortex_gateway_routes_total                     counter    model, route
cortex_gateway_device_memory_used_bytes         gauge      neuron, device
cortex_gateway_device_memory_total_bytes        gauge      neuron, device
cortex_gateway_neuron_up                        gauge      neuron
==============================================  =========  ==============================

``status`` is the HTTP status the client got ("200", "404", "503", ...), "499" when the
client left first, and "502" when the neuron failed after the response had started.
``neuron`` is "" for requests answered before one was chosen. A replica decision's
``direction`` is "up" or "down", ``outcome`` "taken" or "not_taken" (no room, no other
neuron has it...), ``reason`` what prompted it (min, queue_depth, queue_wait, idle,
over_max). ``route`` is how a request's placement was chosen: "affinity" (the
placement that served its prefix) or "least_in_flight". TTFT and duration are
measured at the gateway, so they include queueing and cold loads.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from cortex.common.neuron import Device

_LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
_RATE_BUCKETS = (1, 2, 5, 10, 20, 30, 50, 75, 100, 150, 200, 300, 500, 1000)
_LOAD_BUCKETS = (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


class GatewayMetrics:
    def __init__(self) -> None:
        self.registry = registry = CollectorRegistry(auto_describe=True)
        p = "cortex_gateway_"
        self.requests = Counter(
            p + "requests",
            "Requests answered, by model, neuron, endpoint and HTTP status",
            ["model", "neuron", "endpoint", "status"],
            registry=registry,
        )
        self.prompt_tokens = Counter(
            p + "prompt_tokens", "Prompt tokens processed", ["model"], registry=registry
        )
        self.completion_tokens = Counter(
            p + "completion_tokens", "Completion tokens generated", ["model"], registry=registry
        )
        self.ttft = Histogram(
            p + "time_to_first_token_seconds",
            "From the request reaching the gateway to its first generated token",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            p + "request_duration_seconds",
            "From the request reaching the gateway to its last byte",
            ["model"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.decode_rate = Histogram(
            p + "decode_tokens_per_second",
            "Decode rate per request",
            ["model"],
            buckets=_RATE_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            p + "requests_in_flight",
            "Requests being proxied to a neuron",
            ["model", "neuron"],
            registry=registry,
        )
        self.queued = Gauge(
            p + "requests_queued",
            "Requests waiting for their model to load or for room to load it",
            ["model"],
            registry=registry,
        )
        self.loads = Counter(
            p + "loads",
            "Model loads started by the gateway",
            ["model", "neuron", "result"],
            registry=registry,
        )
        self.load_seconds = Histogram(
            p + "load_duration_seconds",
            "Time a model load took, as the gateway saw it",
            ["model"],
            buckets=_LOAD_BUCKETS,
            registry=registry,
        )
        self.evictions = Counter(
            p + "evictions",
            "Models unloaded by the gateway, by reason (lru, priority, idle_ttl, "
            "over_budget, load_retry)",
            ["model", "reason"],
            registry=registry,
        )
        self.replica_decisions = Counter(
            p + "replica_decisions",
            "Replica scaling decisions, taken or not, with what prompted them",
            ["model", "direction", "outcome", "reason"],
            registry=registry,
        )
        self.replicas_wanted = Gauge(
            p + "replicas_wanted", "Placements the scheduler aims for", ["model"], registry=registry
        )
        self.replicas_serving = Gauge(
            p + "replicas_serving", "Placements loaded and serving", ["model"], registry=registry
        )
        self.routes = Counter(
            p + "routes",
            "Requests granted a placement, by how it was chosen",
            ["model", "route"],
            registry=registry,
        )
        self.retries = Counter(
            p + "upstream_retries",
            "Requests retried on another neuron because theirs failed before answering",
            ["neuron"],
            registry=registry,
        )
        self.memory_used = Gauge(
            p + "device_memory_used_bytes",
            "Memory in use on a neuron's device (VRAM for GPUs)",
            ["neuron", "device"],
            registry=registry,
        )
        self.memory_total = Gauge(
            p + "device_memory_total_bytes",
            "Memory of a neuron's device (VRAM for GPUs)",
            ["neuron", "device"],
            registry=registry,
        )
        self.neuron_up = Gauge(
            p + "neuron_up",
            "1 when the neuron answers its health checks",
            ["neuron"],
            registry=registry,
        )

    def observe_request(
        self,
        *,
        model: str,
        neuron: str,
        endpoint: str,
        status: int,
        seconds: float,
        ttft: float | None = None,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        decode_rate: float | None = None,
    ) -> None:
        self.requests.labels(model, neuron, endpoint, str(status)).inc()
        self.latency.labels(model).observe(seconds)
        if ttft is not None:
            self.ttft.labels(model).observe(ttft)
        if prompt_tokens:
            self.prompt_tokens.labels(model).inc(prompt_tokens)
        if completion_tokens:
            self.completion_tokens.labels(model).inc(completion_tokens)
        if decode_rate:
            self.decode_rate.labels(model).observe(decode_rate)

    def set_devices(self, neuron: str, devices: list[Device]) -> None:
        for device in devices:
            self.memory_used.labels(neuron, device.id).set(device.memory_used)
            self.memory_total.labels(neuron, device.id).set(device.memory_total)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def metrics_app(metrics: GatewayMetrics):
    """A minimal ASGI app for the metrics port: ``GET /metrics`` (and ``/``)."""
    content_type = CONTENT_TYPE_LATEST.encode()

    async def app(scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        if scope["path"] in ("/metrics", "/") and scope["method"] in ("GET", "HEAD"):
            status, body, ctype = 200, metrics.render(), content_type
        else:
            status, ctype = 404, b"text/plain; charset=utf-8"
            body = b"Not found: the metrics are at GET /metrics\n"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", ctype), (b"content-length", str(len(body)).encode())],
            }
        )
        if scope["method"] == "HEAD":
            body = b""
        await send({"type": "http.response.body", "body": body})

    return app
