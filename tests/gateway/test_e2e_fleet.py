"""The gateway end to end: two real CPU neurons, a real gateway, the official SDKs.

Neuron A has demo-tiny and three more copies of it (tiny-b, tiny-c, tiny-d) under a
budget that holds two of them; neuron B has demo-tiny and demo-small under a larger
budget. The tests share the fleet and run in file order: each says what state it
leaves. The last one kills neuron B.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import threading
import time

import anthropic
import httpx
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families
from support.gateway import start_gateway
from support.neuron import start_neuron
from support.streams import NO_EOS

from cortex.common.sse import iter_events

pytestmark = pytest.mark.slow

# A CPU worker holding demo-tiny measures ~370 MB RSS; A's budget holds two of them.
BUDGET_A = "900MiB"
BUDGET_B = "3GiB"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
        },
    },
}


class NeuronEvents:
    """Reads a neuron's /events in a thread and keeps the `model` events."""

    def __init__(self, url: str) -> None:
        self.models: list[dict] = []
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(url,), daemon=True)
        self._thread.start()
        assert self._connected.wait(10), "could not follow the neuron's events"

    def _run(self, url: str) -> None:
        with (
            contextlib.suppress(httpx.HTTPError),
            httpx.stream("GET", url + "/events", timeout=httpx.Timeout(5, read=None)) as response,
        ):
            for event in iter_events(response.iter_bytes()):
                self._connected.set()  # the first event is the status sent on connect
                if event.event == "model":
                    self.models.append(event.json()["model"])
                if self._stop.is_set():
                    return

    def loads_started(self, model: str) -> int:
        return sum(
            1
            for m in self.models
            if m["id"] == model and (m.get("progress") or {}).get("stage") == "queued"
        )

    def close(self) -> None:
        self._stop.set()


@pytest.fixture(scope="module")
def fleet(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("gateway-fleet")
    models_a, models_b = root / "models-a", root / "models-b"
    for name in ("demo-tiny", "tiny-b", "tiny-c", "tiny-d"):
        shutil.copytree(demo_models.tiny, models_a / name)
    shutil.copytree(demo_models.tiny, models_b / "demo-tiny")
    (models_b / "demo-small").symlink_to(demo_models.small, target_is_directory=True)
    with (
        start_neuron(models_a, root / "a", settings={"name": "a", "memory_budget": BUDGET_A}) as a,
        start_neuron(models_b, root / "b", settings={"name": "b", "memory_budget": BUDGET_B}) as b,
        start_gateway(
            root / "gateway",
            neurons={"a": a.url, "b": b.url},
            config={"aliases": {"claude-*": "demo-tiny", "gpt-4o-mini": "demo-tiny"}},
        ) as gateway,
    ):
        gateway.wait_neurons_up()
        yield type("Fleet", (), {"a": a, "b": b, "gateway": gateway})


@pytest.fixture(scope="module")
def oai(fleet):
    return openai.OpenAI(base_url=fleet.gateway.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def claude(fleet):
    return anthropic.Anthropic(base_url=fleet.gateway.url, api_key="unused", max_retries=0)


def loaded_on(gateway, model: str) -> set[str]:
    return {p["neuron"] for p in gateway.placements(model) if p["state"] == "loaded"}


def metric(gateway, name: str, **labels) -> float:
    total = 0.0
    for family in text_string_to_metric_families(gateway.metrics()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


# --------------------------------------------------------------------------- catalogue


def test_list_models_merges_every_neurons_disk(fleet, oai):
    cards = {m.id: m for m in oai.models.list().data}
    assert {"demo-tiny", "tiny-b", "tiny-c", "tiny-d", "demo-small"} <= set(cards)
    tiny = cards["demo-tiny"].model_extra["cortex"]
    assert tiny["state"] == "available"
    assert sorted(tiny["available_on"]) == ["a", "b"]
    assert cards["demo-small"].model_extra["cortex"]["available_on"] == ["b"]
    assert cards["gpt-4o-mini"].model_extra["cortex"] == {
        "state": "alias",
        "alias_of": "demo-tiny",
    }


# --------------------------------------------------------------------------- OpenAI


def test_first_request_cold_loads_the_model_and_answers(fleet, oai):
    assert not fleet.gateway.placements("demo-tiny")
    reply = oai.chat.completions.create(
        model="demo-tiny",
        messages=[{"role": "user", "content": "Say hello"}],
        max_tokens=8,
        temperature=0,
    )
    assert reply.choices[0].finish_reason in ("stop", "length")
    assert reply.usage.completion_tokens > 0
    # B has the most room, so the scheduler put it there.
    assert loaded_on(fleet.gateway, "demo-tiny") == {"b"}
    assert fleet.b.loaded("demo-tiny")["state"] == "loaded"
    assert metric(fleet.gateway, "cortex_gateway_loads_total", model="demo-tiny") == 1


def test_chat_stream_and_completions_through_the_openai_sdk(fleet, oai):
    stream = oai.chat.completions.create(
        model="gpt-4o-mini",  # an alias
        messages=[{"role": "user", "content": "Count to three"}],
        max_tokens=12,
        seed=7,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert text and finishes[-1] in ("stop", "length")
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    whole = oai.chat.completions.create(
        model="demo-tiny",
        messages=[{"role": "user", "content": "Count to three"}],
        max_tokens=12,
        seed=7,
    )
    assert whole.choices[0].message.content == text  # same seed, same text
    legacy = oai.completions.create(model="demo-tiny", prompt="Once upon", max_tokens=5)
    assert legacy.choices[0].text is not None and legacy.usage.completion_tokens > 0


def test_forced_tool_call_through_the_openai_sdk(fleet, oai):
    for choice in ({"type": "function", "function": {"name": "get_weather"}}, "required"):
        reply = oai.chat.completions.create(
            model="demo-tiny",
            messages=[{"role": "user", "content": "Weather in Paris?"}],
            tools=[WEATHER_TOOL],
            tool_choice=choice,
            max_tokens=256,
        )
        calls = reply.choices[0].message.tool_calls
        assert calls and calls[0].function.name == "get_weather"
        assert isinstance(json.loads(calls[0].function.arguments), dict)
        assert reply.choices[0].finish_reason == "tool_calls"


# --------------------------------------------------------------------------- Anthropic


def test_messages_stream_and_non_stream_through_the_anthropic_sdk(fleet, claude):
    message = claude.messages.create(
        model="claude-sonnet-4-6",  # aliased to demo-tiny by "claude-*"
        max_tokens=10,
        extra_body={"temperature": 0},  # greedy: a sampled reply may end at once, textless
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert message.model == "claude-sonnet-4-6"
    assert message.content and message.content[0].type == "text"
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    with claude.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=10,
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "Hello again"}],
        extra_headers={"anthropic-beta": "fine-grained-tool-streaming-2025-05-14"},
        extra_query={"beta": "true"},
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()
    texts = [
        e.delta.text
        for e in events
        if e.type == "content_block_delta" and e.delta.type == "text_delta"
    ]
    assert "".join(texts) == final.content[0].text
    assert final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0
    # Claude Code sizes the prompt from message_start, before any token arrives.
    start = next(e for e in events if e.type == "message_start")
    # (The whole prompt there; the final usage splits off what the prefix cache served.)
    whole_prompt = final.usage.input_tokens + final.usage.cache_read_input_tokens
    assert start.message.usage.input_tokens == whole_prompt > 0


def test_forced_tool_use_through_the_anthropic_sdk(fleet, claude):
    tool = {
        "name": "get_weather",
        "description": "Current weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string", "maxLength": 12}},
            "required": ["city"],
        },
    }
    for choice in ({"type": "tool", "name": "get_weather"}, {"type": "any"}):
        message = claude.messages.create(
            model="claude-sonnet-4-6",
            max_tokens=256,
            tools=[tool],
            tool_choice=choice,
            messages=[{"role": "user", "content": "Weather in Paris?"}],
        )
        uses = [b for b in message.content if b.type == "tool_use"]
        assert uses and uses[0].name == "get_weather" and isinstance(uses[0].input, dict)
        assert message.stop_reason == "tool_use"
    with claude.messages.stream(
        model="claude-sonnet-4-6",
        max_tokens=256,
        tools=[tool],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": "Weather in Rome?"}],
    ) as stream:
        final = stream.get_final_message()
    uses = [b for b in final.content if b.type == "tool_use"]
    assert uses and uses[0].name == "get_weather" and isinstance(uses[0].input, dict)
    assert final.stop_reason == "tool_use"


def test_count_tokens_uses_the_models_chat_template(fleet, claude):
    plain = claude.messages.count_tokens(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "Hello"}]
    )
    longer = claude.messages.count_tokens(
        model="claude-sonnet-4-6",
        messages=[{"role": "user", "content": "Hello, what is the weather like in Paris?"}],
    )
    assert 0 < plain.input_tokens < longer.input_tokens
    # The neuron counts through the chat template: more than the words themselves.
    reply = claude.messages.create(
        model="claude-sonnet-4-6", max_tokens=1, messages=[{"role": "user", "content": "Hello"}]
    )
    assert reply.usage.input_tokens + reply.usage.cache_read_input_tokens == plain.input_tokens


def test_unknown_model_is_404_in_each_dialect(fleet, oai, claude):
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(
            model="no-such-model", messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.code == "model_not_found"
    assert "no-such-model" in caught.value.message and "demo-tiny" in caught.value.message
    with pytest.raises(anthropic.NotFoundError) as caught_a:
        claude.messages.create(
            model="no-such-model", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )
    assert caught_a.value.body["type"] == "error"
    assert caught_a.value.body["error"]["type"] == "not_found_error"


# --------------------------------------------------------------------------- scheduling


async def test_ten_concurrent_first_requests_load_once_on_the_neuron_that_has_it(fleet):
    gateway = fleet.gateway
    events = NeuronEvents(fleet.b.url)
    body = {
        "model": "demo-small",
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4,
        "stream": True,
    }

    async def one(client: httpx.AsyncClient) -> tuple[int, bytes]:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            return response.status_code, await response.aread()

    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=180) as client:
            results = await asyncio.gather(*(one(client) for _ in range(10)))
    finally:
        events.close()
    assert [status for status, _ in results] == [200] * 10
    for _, raw in results:
        assert raw.rstrip().endswith(b"data: [DONE]")
    assert any(raw.startswith(b": ping") for _, raw in results)  # kept alive while loading
    assert loaded_on(gateway, "demo-small") == {"b"}  # routed to the only neuron with it
    assert events.loads_started("demo-small") == 1
    assert metric(gateway, "cortex_gateway_loads_total", model="demo-small") == 1


def test_client_disconnect_stops_generation_on_the_neuron(fleet, oai):
    stream = oai.chat.completions.create(
        model="demo-small",
        messages=[{"role": "user", "content": "Tell a very long story"}],
        max_tokens=3000,
        logit_bias=NO_EOS,
        stream=True,
    )
    for _, _chunk in zip(range(3), stream, strict=False):
        pass
    stream.close()
    fleet.b.wait_for(lambda: fleet.b.loaded("demo-small").get("in_flight", 0) == 0, timeout=10)
    produced = fleet.b.loaded("demo-small").get("completion_tokens_total", 0)
    time.sleep(0.5)
    assert fleet.b.loaded("demo-small").get("completion_tokens_total", 0) == produced
    fleet.gateway.wait_for(
        lambda: metric(fleet.gateway, "cortex_gateway_requests_total", status="499") >= 1,
        timeout=10,
    )


def chat(oai, model: str) -> None:
    oai.chat.completions.create(
        model=model, messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )


def test_a_client_that_leaves_while_waiting_for_a_load_is_dropped_from_the_queue(fleet):
    gateway = fleet.gateway
    body = {"model": "tiny-b", "messages": [{"role": "user", "content": "Hi"}], "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body, timeout=60) as r:
        assert r.status_code == 200  # at once, before the model is loaded
        lines = r.iter_lines()  # held: dropping the iterator would close the response
        assert next(lines) == ": ping"
        assert metric(gateway, "cortex_gateway_requests_queued", model="tiny-b") == 1
    gateway.wait_for(
        lambda: (
            metric(gateway, "cortex_gateway_requests_queued", model="tiny-b") == 0
            and metric(gateway, "cortex_gateway_requests_total", model="tiny-b", status="499") == 1
        ),
        timeout=10,
    )
    # The load had reached the neuron, so it finishes (documented): the model is there.
    gateway.wait_for(lambda: loaded_on(gateway, "tiny-b") == {"a"}, timeout=120)


def test_lru_model_is_evicted_when_the_budget_is_full(fleet, oai):
    gateway = fleet.gateway
    chat(oai, "tiny-b")
    chat(oai, "tiny-c")
    assert loaded_on(gateway, "tiny-b") == loaded_on(gateway, "tiny-c") == {"a"}
    chat(oai, "tiny-c")  # tiny-b is now the least recently used
    chat(oai, "tiny-d")
    on_a = {p["model"] for p in gateway.placements() if p["neuron"] == "a"}
    assert on_a == {"tiny-c", "tiny-d"}
    assert fleet.a.loaded("tiny-b") is None
    assert metric(gateway, "cortex_gateway_evictions_total", model="tiny-b", reason="lru") == 1
    logs = gateway.get("/fleet/logs").json()
    assert any(e["kind"] == "evict" and e["model"] == "tiny-b" for e in logs)


def test_a_pinned_model_survives_eviction_pressure(fleet, oai):
    gateway = fleet.gateway
    chat(oai, "tiny-d")  # tiny-c is now the least recently used on A
    pinned = gateway.post("/fleet/models/tiny-c/pin")
    assert pinned.status_code == 200 and pinned.json()["ok"]
    chat(oai, "tiny-b")
    on_a = {p["model"] for p in gateway.placements() if p["neuron"] == "a"}
    assert on_a == {"tiny-c", "tiny-b"}  # tiny-d went instead of the pinned LRU model
    assert gateway.fleet()["placements"][0] is not None
    entry = next(c for c in gateway.fleet()["catalogue"] if c["id"] == "tiny-c")
    assert entry["pinned"] and entry["pin_source"] == "api"
    assert gateway.post("/fleet/models/tiny-c/unpin").json()["ok"]


def test_fleet_api_load_streams_progress_into_the_fleet_events(fleet):
    gateway = fleet.gateway
    seen: list[tuple[str, dict]] = []
    with httpx.stream("GET", gateway.url + "/fleet/events", timeout=httpx.Timeout(60)) as events:
        chunks = events.iter_bytes()
        first = next(iter_events(chunks))
        assert first.event == "snapshot" and "neurons" in first.json()["snapshot"]
        started = gateway.post("/fleet/models/tiny-d/load?wait=false", json={"neuron": "a"})
        assert started.status_code == 202, started.text
        assert started.json()["placements"][0]["state"] == "loading"
        for event in iter_events(chunks):
            seen.append((event.event, event.json()))
            if event.event == "placement":
                placement = event.json()["placement"]
                if placement["model"] == "tiny-d" and placement["state"] == "loaded":
                    break
    kinds = {kind for kind, _ in seen}
    assert {"placement", "log"} <= kinds
    states = [
        d["placement"]["state"]
        for k, d in seen
        if k == "placement" and d["placement"]["model"] == "tiny-d"
    ]
    assert states[0] == "loading" and states[-1] == "loaded"
    assert any(k == "log" and d["entry"]["kind"] == "load" for k, d in seen)
    # A's budget holds two: loading tiny-d there evicted the least recently used one.
    assert any(k == "placement_removed" for k, _ in seen)
    done = gateway.post("/fleet/models/tiny-d/load", json={"neuron": "a"})
    assert done.status_code == 200 and "already loaded" in done.json()["message"]


def test_metrics_parse_and_cover_requests_tokens_latency_and_neurons(fleet):
    text = fleet.gateway.metrics()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for name in (
        "cortex_gateway_requests",
        "cortex_gateway_prompt_tokens",
        "cortex_gateway_completion_tokens",
        "cortex_gateway_time_to_first_token_seconds",
        "cortex_gateway_request_duration_seconds",
        "cortex_gateway_decode_tokens_per_second",
        "cortex_gateway_requests_in_flight",
        "cortex_gateway_requests_queued",
        "cortex_gateway_loads",
        "cortex_gateway_load_duration_seconds",
        "cortex_gateway_evictions",
        "cortex_gateway_device_memory_used_bytes",
        "cortex_gateway_device_memory_total_bytes",
        "cortex_gateway_neuron_up",
    ):
        assert name in families, name
    gateway = fleet.gateway
    assert metric(gateway, "cortex_gateway_requests_total", model="demo-tiny", status="200") > 5
    assert metric(gateway, "cortex_gateway_requests_total", model="no-such-model") == 0
    assert metric(gateway, "cortex_gateway_completion_tokens_total", model="demo-tiny") > 0
    assert metric(gateway, "cortex_gateway_time_to_first_token_seconds_count") > 0
    assert metric(gateway, "cortex_gateway_neuron_up", neuron="a") == 1
    assert metric(gateway, "cortex_gateway_device_memory_total_bytes", neuron="b") > 0


# --------------------------------------------------------------------------- failure


def test_a_neuron_that_dies_mid_stream_ends_the_stream_and_its_models_move(fleet, oai, claude):
    gateway = fleet.gateway
    assert loaded_on(gateway, "demo-tiny") == {"b"}
    # A second gateway that checks health rarely: it will still think B is up.
    slow = contextlib.ExitStack()
    lagging = slow.enter_context(
        start_gateway(
            gateway.work_dir.parent / "lagging-gateway",
            neurons={"a": fleet.a.url, "b": fleet.b.url},
            config={"health": {"interval_s": 60.0, "missed_beats": 3}},
        )
    )
    lagging.wait_neurons_up()
    lagging.wait_for(lambda: loaded_on(lagging, "demo-tiny") == {"b"})
    stream = oai.chat.completions.create(
        model="demo-tiny",
        messages=[{"role": "user", "content": "Tell a very long story"}],
        max_tokens=1900,  # demo-tiny's context is 2048
        logit_bias=NO_EOS,
        stream=True,
    )
    next(iter(stream))
    fleet.b.kill()
    with pytest.raises(openai.APIError) as caught:
        for _ in stream:
            pass
    assert "b" in str(caught.value.message)
    gateway.wait_for(
        lambda: not next(n for n in gateway.fleet()["neurons"] if n["name"] == "b")["up"]
    )
    # The lagging gateway still routes to B: B refuses the connection, so the request is
    # retried once on A, which also has demo-tiny (a cold load, evicting per A's budget).
    with slow:
        assert next(n for n in lagging.fleet()["neurons"] if n["name"] == "b")["up"]
        lagging_client = openai.OpenAI(base_url=lagging.url + "/v1", api_key="x", max_retries=0)
        retried = lagging_client.chat.completions.create(
            model="demo-tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
        )
        assert retried.choices[0].message.content is not None
        assert metric(lagging, "cortex_gateway_upstream_retries_total", neuron="b") == 1
        assert loaded_on(lagging, "demo-tiny") == {"a"}
    reply = oai.chat.completions.create(
        model="demo-tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=2
    )
    assert reply.choices[0].message.content is not None
    assert loaded_on(gateway, "demo-tiny") == {"a"}
    # demo-small was only on B: unavailable, with a message that says why.
    with pytest.raises(openai.APIStatusError) as down:
        chat(oai, "demo-small")
    assert down.value.status_code == 503 and "down" in down.value.message
    with pytest.raises(anthropic.APIStatusError) as down_a:
        claude.messages.create(
            model="demo-small", max_tokens=2, messages=[{"role": "user", "content": "x"}]
        )
    assert down_a.value.status_code == 503
    assert down_a.value.body["error"]["type"] == "overloaded_error"
    cards = {m.id: m.model_extra["cortex"] for m in oai.models.list().data}
    assert cards["demo-small"]["state"] == "unavailable"
