"""Prometheus metrics of one neuron (``GET /metrics``), in a registry of its own.

Counters and histograms are updated as requests finish; gauges (in flight, queued,
rolling tok/s, memory per model and device) are read from live state at scrape time,
so a model that was unloaded simply disappears from them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from cortex.common.neuron import Device, LoadedModel, RequestStats

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

TTFT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
RATE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class NeuronMetrics:
    def __init__(
        self,
        models: Callable[[], Iterable[LoadedModel]],
        devices: Callable[[], Iterable[Device]],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "cortex_neuron_requests",
            "Finished requests by model, endpoint and status (ok, error, cancelled).",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.prompt_tokens = Counter(
            "cortex_neuron_prompt_tokens",
            "Prompt tokens processed.",
            ["model"],
            registry=self.registry,
        )
        self.cached_prompt_tokens = Counter(
            "cortex_neuron_prompt_tokens_cached",
            "Prompt tokens reused from the engine's prefix cache (not computed).",
            ["model"],
            registry=self.registry,
        )
        self.computed_prompt_tokens = Counter(
            "cortex_neuron_prompt_tokens_computed",
            "Prompt tokens the engine prefilled (not found in its prefix cache).",
            ["model"],
            registry=self.registry,
        )
        self.completion_tokens = Counter(
            "cortex_neuron_completion_tokens",
            "Completion tokens generated.",
            ["model"],
            registry=self.registry,
        )
        self.ttft = Histogram(
            "cortex_neuron_ttft_seconds",
            "Time to first token, from the request's arrival.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=self.registry,
        )
        self.decode_rate = Histogram(
            "cortex_neuron_decode_tokens_per_second",
            "Decode rate of each request (tokens after the first / time after the first).",
            ["model"],
            buckets=RATE_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "cortex_neuron_request_seconds",
            "Whole request time, queue included.",
            ["model"],
            buckets=DURATION_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_LiveCollector(models, devices))

    def record(self, stats: RequestStats) -> None:
        self.requests.labels(stats.model, stats.endpoint, stats.status).inc()
        self.prompt_tokens.labels(stats.model).inc(stats.prompt_tokens)
        self.cached_prompt_tokens.labels(stats.model).inc(stats.cached_tokens)
        self.computed_prompt_tokens.labels(stats.model).inc(
            stats.prompt_tokens - stats.cached_tokens
        )
        if stats.ttft_ms is not None:
            self.ttft.labels(stats.model).observe(stats.ttft_ms / 1000.0)
        if stats.decode_tokens_per_s:
            self.decode_rate.labels(stats.model).observe(stats.decode_tokens_per_s)
        self.request_seconds.labels(stats.model).observe(stats.total_ms / 1000.0)

    def count_completion_tokens(self, model: str, tokens: int) -> None:
        self.completion_tokens.labels(model).inc(tokens)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _LiveCollector(Collector):
    def __init__(self, models, devices) -> None:
        self._models = models
        self._devices = devices

    def describe(self):
        return []

    def collect(self):
        in_flight = GaugeMetricFamily(
            "cortex_neuron_in_flight", "Requests generating now.", labels=["model"]
        )
        queued = GaugeMetricFamily(
            "cortex_neuron_queued", "Requests waiting for a slot.", labels=["model"]
        )
        rate = GaugeMetricFamily(
            "cortex_neuron_tokens_per_second",
            "Rolling decode rate over the last few seconds, all requests of a model.",
            labels=["model"],
        )
        loaded = GaugeMetricFamily(
            "cortex_neuron_model_loaded",
            "1 when loaded, 0 while loading.",
            labels=["model", "backend"],
        )
        load_seconds = GaugeMetricFamily(
            "cortex_neuron_model_load_seconds", "How long the model took to load.", labels=["model"]
        )
        memory = GaugeMetricFamily(
            "cortex_neuron_model_memory_bytes",
            "Memory the model's worker holds, per device.",
            labels=["model", "device"],
        )
        concurrency = GaugeMetricFamily(
            "cortex_neuron_model_max_concurrency",
            "Sequences the model serves at once.",
            labels=["model"],
        )
        forwards = CounterMetricFamily(
            "cortex_neuron_engine_forwards",
            "Model forward passes; with batching, fewer than the tokens generated.",
            labels=["model"],
        )
        cache_bytes = GaugeMetricFamily(
            "cortex_neuron_prefix_cache_bytes",
            "Bytes of KV state the model's prefix cache holds.",
            labels=["model"],
        )
        for model in self._models():
            forwards.add_metric([model.id], model.forwards_total)
            if model.prefix_cache is not None:
                cache_bytes.add_metric([model.id], model.prefix_cache.size_bytes)
            in_flight.add_metric([model.id], model.in_flight)
            queued.add_metric([model.id], model.queued)
            rate.add_metric([model.id], model.tokens_per_s)
            loaded.add_metric([model.id, model.backend], 1 if model.state == "loaded" else 0)
            concurrency.add_metric([model.id], model.max_concurrency)
            if model.load_seconds is not None:
                load_seconds.add_metric([model.id], model.load_seconds)
            for device, used in model.memory_by_device.items():
                memory.add_metric([model.id, device], used)
        yield from (in_flight, queued, rate, loaded, load_seconds, memory, concurrency)
        yield from (forwards, cache_bytes)

        total = GaugeMetricFamily(
            "cortex_neuron_device_memory_total_bytes", "Device memory.", labels=["device", "name"]
        )
        used = GaugeMetricFamily(
            "cortex_neuron_device_memory_used_bytes", "Device memory in use.", labels=["device"]
        )
        budget = GaugeMetricFamily(
            "cortex_neuron_device_memory_budget_bytes",
            "Memory cortex may use on the device (neuron.toml).",
            labels=["device"],
        )
        utilization = GaugeMetricFamily(
            "cortex_neuron_device_utilization_percent", "Device utilisation.", labels=["device"]
        )
        for device in self._devices():
            total.add_metric([device.id, device.name], device.memory_total)
            used.add_metric([device.id], device.memory_used)
            if device.budget is not None:
                budget.add_metric([device.id], device.budget)
            if device.utilization is not None:
                utilization.add_metric([device.id], device.utilization)
        yield from (total, used, budget, utilization)
