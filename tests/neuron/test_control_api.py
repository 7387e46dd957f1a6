"""Load, unload, status, events, tokenize and metrics of a real neuron."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import httpx
import psutil
from neuron.recorder import EventRecorder
from prometheus_client.parser import text_string_to_metric_families
from support.neuron import start_neuron

from cortex.common.neuron import NEURON_EVENT_TAGS
from cortex.common.sse import SSEDecoder


def test_status_lists_devices_and_models_on_disk(neuron):
    status = neuron.status()
    (cpu,) = [d for d in status["devices"] if d["id"] == "cpu"]
    assert cpu["memory_total"] > 0 and cpu["budget"] > 0
    available = {m["id"]: m for m in status["available"]}
    small = available["demo-small"]
    assert small["format"] == "safetensors"
    assert small["architecture"] == "LlamaForCausalLM"
    assert small["kv_bytes_per_token"] == 2 * 8 * 4 * 64 * 2
    assert small["max_seq_len"] == 4096
    assert "transformers" in small["backends"]


def test_load_and_unload_change_status_and_events_and_memory_returns(neuron):
    recorder = EventRecorder(neuron)
    try:
        assert recorder.wait_for(neuron, lambda kind, data: kind == "status")
        loaded = neuron.load("demo-small", id="small-cycle", max_seq_len=1024)
        assert loaded["state"] == "loaded"
        assert loaded["max_seq_len"] == 1024
        pid = loaded["pid"]
        assert psutil.pid_exists(pid)
        in_status = neuron.loaded("small-cycle")
        assert in_status["memory_bytes"] > 0
        cpu = next(d for d in neuron.status()["devices"] if d["id"] == "cpu")
        assert any(p["pid"] == pid and p["model"] == "small-cycle" for p in cpu["processes"])
        recorder.wait_for(
            neuron,
            lambda kind, data: (
                kind == "model"
                and data["model"]["id"] == "small-cycle"
                and data["model"]["state"] == "loaded"
            ),
        )

        neuron.unload("small-cycle")
        assert neuron.loaded("small-cycle") is None
        neuron.wait_for(lambda: not psutil.pid_exists(pid) or _zombie(pid))
        cpu = next(d for d in neuron.status()["devices"] if d["id"] == "cpu")
        assert all(p["pid"] != pid for p in cpu["processes"])
        removed = recorder.wait_for(
            neuron,
            lambda kind, data: kind == "model_removed" and data["id"] == "small-cycle",
        )
        assert removed[1]["reason"] == "unloaded"
        kinds = {kind for kind, _ in recorder.events}
        assert kinds <= set(NEURON_EVENT_TAGS)
    finally:
        recorder.close()


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_load_streams_progress_then_loaded(neuron):
    with (
        neuron.client() as client,
        client.stream(
            "POST",
            "/models/load",
            json={"model": "demo-tiny", "id": "tiny-progress"},
            headers={"Accept": "text/event-stream"},
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        decoder = SSEDecoder()
        events = [e for chunk in response.iter_bytes() for e in decoder.feed(chunk)]
    kinds = [e.event for e in events]
    assert kinds[-1] == "loaded"
    progress = [json.loads(e.data) for e in events if e.event == "progress"]
    assert progress, kinds
    assert any(p.get("total", 0) > 1 and p.get("done") == p["total"] for p in progress)
    final = json.loads(events[-1].data)
    assert final["id"] == "tiny-progress" and final["state"] == "loaded"
    neuron.unload("tiny-progress")


def test_loading_twice_at_once_joins_one_load(neuron):
    with ThreadPoolExecutor(2) as pool:
        first, second = pool.map(lambda _: neuron.load("demo-tiny", id="tiny-joined"), range(2))
    assert first["pid"] == second["pid"]
    assert [m["id"] for m in neuron.status()["loaded"]].count("tiny-joined") == 1
    neuron.unload("tiny-joined")


def test_load_errors_are_clear(neuron):
    missing = neuron.post("/models/load", json={"model": "no-such-model"})
    assert missing.status_code == 404
    assert "no-such-model" in missing.json()["error"]["message"]
    no_gpu = neuron.post(
        "/models/load", json={"model": "demo-tiny", "id": "tiny-exl", "backend": "exllamav2"}
    )
    assert no_gpu.status_code == 400
    assert "CUDA" in no_gpu.json()["error"]["message"]
    bad = neuron.post("/models/load", json={"model": "demo-tiny", "id": "t", "cache_type": "q3"})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "cache_type"
    # A context beyond the model's own is refused, not silently capped.
    too_long = neuron.post(
        "/models/load", json={"model": "demo-tiny", "id": "t", "max_seq_len": 32768}
    )
    assert too_long.status_code == 400
    error = too_long.json()["error"]
    assert error["param"] == "max_seq_len" and error["code"] == "max_seq_len_too_large"
    assert "32768" in error["message"] and "2048" in error["message"]


def test_tokenize_loaded_and_on_disk(neuron):
    messages = [{"role": "user", "content": "Hello there"}]
    loaded = neuron.post(
        "/tokenize", json={"model": "demo-tiny", "messages": messages, "return_ids": True}
    ).json()
    assert loaded["count"] == len(loaded["ids"]) > 5
    assert loaded["max_seq_len"] == 2048
    on_disk = neuron.post("/tokenize", json={"model": "demo-small", "messages": messages}).json()
    # Same tokenizer and template in both demo models: same count.
    assert on_disk["count"] == loaded["count"]
    text = neuron.post("/tokenize", json={"model": "demo-tiny", "text": "Hello there"}).json()
    assert 0 < text["count"] < loaded["count"]


def test_metrics_parse_and_have_per_model_series(neuron, client):
    client.chat.completions.create(
        model="demo-tiny", messages=[{"role": "user", "content": "hi"}], max_tokens=4
    )
    text = neuron.get("/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "cortex_neuron_requests",
        "cortex_neuron_prompt_tokens",
        "cortex_neuron_completion_tokens",
        "cortex_neuron_ttft_seconds",
        "cortex_neuron_decode_tokens_per_second",
        "cortex_neuron_tokens_per_second",
        "cortex_neuron_in_flight",
        "cortex_neuron_model_memory_bytes",
        "cortex_neuron_device_memory_used_bytes",
    ):
        assert name in families, name
    requests = [
        s
        for s in families["cortex_neuron_requests"].samples
        if s.name == "cortex_neuron_requests_total" and s.labels.get("model") == "demo-tiny"
    ]
    assert sum(s.value for s in requests if s.labels["status"] == "ok") >= 1
    ttft_count = [
        s
        for s in families["cortex_neuron_ttft_seconds"].samples
        if s.name.endswith("_count") and s.labels["model"] == "demo-tiny"
    ]
    assert ttft_count and ttft_count[0].value >= 1


def test_health_is_cheap_and_open(neuron):
    response = httpx.get(neuron.url + "/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_request_id_is_echoed(neuron):
    response = neuron.get("/status", headers={"x-request-id": "trace-123"})
    assert response.headers["x-request-id"] == "trace-123"
    assert neuron.get("/status").headers["x-request-id"]


def test_unknown_route_and_method_use_the_openai_envelope(neuron):
    missing = neuron.get("/v1/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
    wrong = neuron.post("/status")
    assert wrong.status_code == 405
    assert "error" in wrong.json()


def test_openapi_schema_documents_the_api(neuron):
    schema = neuron.get("/schema/openapi.json").json()
    paths = schema["paths"]
    for path in ("/v1/chat/completions", "/models/load", "/status", "/events", "/tokenize"):
        assert path in paths, path
    body = paths["/v1/chat/completions"]["post"]["requestBody"]
    assert "ChatCompletionRequest" in json.dumps(body)


def _workers(neuron) -> set[int]:
    return {c.pid for c in psutil.Process(neuron.process.pid).children(recursive=True)}


def test_failed_load_is_a_clear_error_and_leaves_no_worker(neuron, tmp_path, demo_models):
    broken = tmp_path / "broken-model"
    shutil.copytree(demo_models.tiny, broken)
    config = json.loads((broken / "config.json").read_text())
    config.update(model_type="no-such-architecture", architectures=["NoSuchForCausalLM"])
    (broken / "config.json").write_text(json.dumps(config))
    before = _workers(neuron)
    recorder = EventRecorder(neuron)
    try:
        response = neuron.post("/models/load", json={"model": str(broken)})
        assert response.status_code == 500
        error = response.json()["error"]
        assert error["code"] == "load_failed"
        assert "broken-model" in error["message"] and "no-such-architecture" in error["message"]
        assert neuron.loaded("broken-model") is None
        removed = recorder.wait_for(
            neuron, lambda kind, data: kind == "model_removed" and data["id"] == "broken-model"
        )[1]
        assert removed["reason"] == "failed"
        neuron.wait_for(lambda: _workers(neuron) <= before)
    finally:
        recorder.close()


def test_spare_worker_takes_the_next_load(demo_models, tmp_path):
    with start_neuron(demo_models.root, tmp_path, settings={"prewarm_worker": True}) as neuron:
        spare = neuron.wait_for(lambda: _workers(neuron))
        loaded = neuron.load("demo-tiny")
        assert loaded["pid"] in spare
        # A new spare is started for the load after this one.
        neuron.wait_for(lambda: _workers(neuron) - {loaded["pid"]})
