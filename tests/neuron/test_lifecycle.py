"""Disconnects, crashes, a full queue and the token: a neuron under adverse conditions."""

from __future__ import annotations

import os
import signal

import httpx
import openai
import pytest
from neuron.recorder import EventRecorder
from support.neuron import start_neuron

HELLO = [{"role": "user", "content": "Tell me a long story."}]


@pytest.fixture(scope="module")
def no_eos(demo_models) -> dict[str, int]:
    """A logit_bias that bans the demo model's end tokens, so a long request keeps going."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(demo_models.tiny / "tokenizer.json"))
    return {str(tokenizer.token_to_id(t)): -100 for t in ("<|im_end|>", "<|endoftext|>")}


def _figures(neuron, model: str) -> dict:
    found = neuron.loaded(model)
    assert found is not None, f"{model} is not loaded"
    return found


def _read_some_chunks(lines, count: int) -> None:
    """Read ``count`` content chunks from a live ``iter_lines()`` iterator.

    The iterator is advanced with next(), never abandoned: closing httpx's line
    generator closes the connection, which is a disconnect.
    """
    seen = 0
    while seen < count:
        line = next(lines)
        if line.startswith("data: ") and '"content"' in line:
            seen += 1


def test_disconnect_stops_generation_and_a_queued_request_never_runs(neuron, no_eos):
    neuron.load("demo-small", id="small-cut", max_concurrency=1)
    recorder = EventRecorder(neuron)
    body = {
        "model": "small-cut",
        "messages": HELLO,
        "max_tokens": 3000,
        "stream": True,
        "logit_bias": no_eos,
    }
    try:
        with (
            neuron.client() as running_client,
            neuron.client() as queued_client,
            running_client.stream("POST", "/v1/chat/completions", json=body) as running,
        ):
            assert running.status_code == 200
            running_lines = running.iter_lines()
            _read_some_chunks(running_lines, 3)
            # A second request queues behind the first (concurrency 1) ...
            with queued_client.stream(
                "POST", "/v1/chat/completions", json={**body, "max_tokens": 50}
            ) as queued:
                assert queued.status_code == 200
                neuron.wait_for(lambda: _figures(neuron, "small-cut").get("queued", 0) == 1)
            # ... and its client leaves before it ever ran; then the running one leaves.
        neuron.wait_for(lambda: _figures(neuron, "small-cut").get("in_flight", 0) == 0)
        neuron.wait_for(lambda: _figures(neuron, "small-cut").get("queued", 0) == 0)

        cancelled = recorder.wait_for(
            neuron,
            lambda kind, data: (
                kind == "request"
                and data["stats"]["model"] == "small-cut"
                and data["stats"]["status"] == "cancelled"
                and data["stats"].get("completion_tokens", 0) > 0
            ),
        )[1]["stats"]
        assert cancelled["completion_tokens"] < 3000
        never_ran = recorder.wait_for(
            neuron,
            lambda kind, data: (
                kind == "request"
                and data["stats"]["model"] == "small-cut"
                and data["stats"]["status"] == "cancelled"
                and data["stats"].get("completion_tokens", 0) == 0
            ),
        )[1]["stats"]
        assert "ttft_ms" not in never_ran  # it never produced a token

        # The counter stopped: one more 2-token request adds exactly 2.
        before = _figures(neuron, "small-cut").get("completion_tokens_total", 0)
        client = openai.OpenAI(base_url=neuron.url + "/v1", api_key="x", max_retries=0)
        done = client.chat.completions.create(model="small-cut", messages=HELLO, max_tokens=2)
        after = _figures(neuron, "small-cut").get("completion_tokens_total", 0)
        assert after == before + done.usage.completion_tokens
    finally:
        recorder.close()
        neuron.unload("small-cut")


def test_killed_worker_ends_the_stream_with_an_error_and_the_neuron_keeps_serving(
    neuron, client, no_eos
):
    loaded = neuron.load("demo-small", id="small-crash")
    recorder = EventRecorder(neuron)
    try:
        stream = client.chat.completions.create(
            model="small-crash", messages=HELLO, max_tokens=3000, stream=True, logit_bias=no_eos
        )
        with pytest.raises(openai.APIError) as error:
            for index, _chunk in enumerate(stream):
                if index == 2:
                    os.kill(loaded["pid"], signal.SIGKILL)
        assert "killed" in str(error.value.message) or "worker" in str(error.value.message)
        removed = recorder.wait_for(
            neuron, lambda kind, data: kind == "model_removed" and data["id"] == "small-crash"
        )[1]
        assert removed["reason"] == "crashed"
        assert neuron.loaded("small-crash") is None
        with pytest.raises(openai.NotFoundError):
            client.chat.completions.create(model="small-crash", messages=HELLO, max_tokens=2)
        alive = client.chat.completions.create(model="demo-tiny", messages=HELLO, max_tokens=2)
        assert alive.usage.completion_tokens >= 1
    finally:
        recorder.close()


@pytest.fixture(scope="module")
def strict_neuron(demo_models, tmp_path_factory):
    """A neuron with a token, one sequence per model and no queue."""
    with start_neuron(
        demo_models.root,
        tmp_path_factory.mktemp("strict-neuron"),
        token="sekret",
        settings={"max_concurrency": 1, "max_queue": 0},
    ) as running:
        running.load("demo-small")
        yield running


def test_full_queue_is_429_with_retry_after(strict_neuron, no_eos):
    neuron = strict_neuron
    body = {
        "model": "demo-small",
        "messages": HELLO,
        "max_tokens": 3000,
        "stream": True,
        "logit_bias": no_eos,
    }
    client = openai.OpenAI(base_url=neuron.url + "/v1", api_key=neuron.token, max_retries=0)
    with (
        neuron.client() as busy_client,
        busy_client.stream("POST", "/v1/chat/completions", json=body) as busy,
    ):
        assert busy.status_code == 200
        busy_lines = busy.iter_lines()
        _read_some_chunks(busy_lines, 1)
        with pytest.raises(openai.RateLimitError) as error:
            client.chat.completions.create(model="demo-small", messages=HELLO, max_tokens=2)
    assert error.value.body["code"] == "queue_full"
    assert int(error.value.response.headers["retry-after"]) >= 1


def test_token_is_required_everywhere_but_health(strict_neuron):
    neuron = strict_neuron
    anonymous = openai.OpenAI(base_url=neuron.url + "/v1", api_key="wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
    assert httpx.get(neuron.url + "/status").status_code == 401
    assert httpx.get(neuron.url + "/metrics").status_code == 401
    assert httpx.get(neuron.url + "/health").status_code == 200
    assert neuron.get("/status").status_code == 200


def test_unload_ends_running_streams_with_an_error(neuron, client, no_eos):
    neuron.load("demo-tiny", id="tiny-unloaded")
    stream = client.chat.completions.create(
        model="tiny-unloaded", messages=HELLO, max_tokens=1900, stream=True, logit_bias=no_eos
    )
    with pytest.raises(openai.APIError) as error:
        for index, _chunk in enumerate(stream):
            if index == 1:
                neuron.unload("tiny-unloaded")
    assert "unloaded" in error.value.message
    assert neuron.loaded("tiny-unloaded") is None
