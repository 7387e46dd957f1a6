"""Continuous batching and the prefix cache, on a real neuron with the demo model.

One neuron serves demo-tiny three times: ``batched`` (continuous batching, no prefix
cache), ``round-robin`` (one forward per sequence per step) and ``cached`` (continuous
batching with a prefix cache). Greedy decoding in fp32 gives the same tokens in all
three, so each comparison below is exact.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from support.neuron import start_neuron

HELLO = [{"role": "user", "content": "Tell me about the fleet of neurons."}]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "maxLength": 12},
                    "unit": {"type": "string", "enum": ["c", "f"]},
                },
                "required": ["city", "unit"],
            },
        },
    }
]
SCHEMA = {
    "type": "object",
    "properties": {"n": {"type": "integer"}, "word": {"type": "string", "maxLength": 10}},
    "required": ["n", "word"],
}
# Each pipeline feature as request options (greedy, so every run must agree).
FEATURES = {
    "plain": {"max_tokens": 24},
    "stop": {"max_tokens": 48, "stop": ["e", "\n"]},
    "tool call": {"max_tokens": 64, "tools": TOOLS, "tool_choice": "required"},
    "json": {
        "max_tokens": 64,
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA}},
    },
    "penalties": {"max_tokens": 24, "frequency_penalty": 1.5, "presence_penalty": 0.5},
}
SYSTEM = " ".join(f"Rule {i}: answer briefly and name the neuron you run on." for i in range(40))


@pytest.fixture(scope="module")
def neuron(demo_models, tmp_path_factory):
    with start_neuron(
        demo_models.root,
        tmp_path_factory.mktemp("batching"),
        settings={"max_concurrency": 4, "prefix_cache": 0},
    ) as running:
        running.load("demo-tiny", id="batched")
        running.load("demo-tiny", id="round-robin", batching="round_robin")
        running.load("demo-tiny", id="cached", prefix_cache="64MiB")
        yield running


@pytest.fixture
def client(neuron) -> openai.OpenAI:
    return openai.OpenAI(base_url=neuron.url + "/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def no_eos(demo_models) -> dict[str, int]:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(demo_models.tiny / "tokenizer.json"))
    return {str(tokenizer.token_to_id(t)): -100 for t in ("<|im_end|>", "<|endoftext|>")}


def _answer(client: openai.OpenAI, model: str, messages: list, options: dict) -> tuple:
    response = client.chat.completions.create(
        model=model, messages=messages, temperature=0, **options
    )
    choice = response.choices[0]
    calls = [(c.function.name, c.function.arguments) for c in choice.message.tool_calls or []]
    return (choice.message.content, calls, choice.finish_reason), response.usage


def _all_at_once(calls) -> list:
    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(lambda call: call(), calls))


def test_capabilities_report_batching_and_concurrency(neuron):
    batched, round_robin = neuron.loaded("batched"), neuron.loaded("round-robin")
    assert (batched["batching"], batched["max_concurrency"]) == ("continuous", 4)
    assert round_robin["batching"] == "round_robin"
    assert "prefix_cache" not in batched
    assert neuron.loaded("cached")["prefix_cache"]["budget_bytes"] == 64 * 1024 * 1024


def test_load_options_are_checked(neuron):
    bad_batching = neuron.post("/models/load", json={"model": "demo-tiny", "batching": "padded"})
    assert bad_batching.status_code == 400
    bad_size = neuron.post("/models/load", json={"model": "demo-tiny", "prefix_cache": "lots"})
    assert bad_size.status_code == 400
    assert "prefix_cache" in bad_size.text


@pytest.mark.parametrize(("model", "most"), [("batched", 0.5), ("round-robin", None)])
def test_concurrent_requests_share_each_forward(neuron, client, no_eos, model, most):
    """Four streams at once: one forward per step for all of them, or one each."""
    before = neuron.loaded(model).get("forwards_total", 0)
    tokens = 32

    def one():
        return client.chat.completions.create(
            model=model, messages=HELLO, max_tokens=tokens, logit_bias=no_eos, seed=1
        )

    responses = _all_at_once([one] * 4)
    generated = sum(r.usage.completion_tokens for r in responses)
    assert generated == 4 * tokens
    forwards = neuron.loaded(model).get("forwards_total", 0) - before
    if most is None:
        assert forwards >= generated  # round-robin: one forward per token, at least
    else:
        assert forwards <= most * generated, (forwards, generated)


def test_batched_greedy_outputs_equal_round_robin_for_every_feature(client):
    alone = {name: _answer(client, "round-robin", HELLO, o)[0] for name, o in FEATURES.items()}
    calls = [lambda o=o: _answer(client, "batched", HELLO, o)[0] for o in FEATURES.values()]
    together = dict(zip(FEATURES, _all_at_once(calls), strict=True))
    assert together == alone
    assert alone["tool call"][2] == "tool_calls"
    assert set(json.loads(alone["json"][0])) == {"n", "word"}


def test_a_failing_sequence_ends_alone(neuron, no_eos):
    """A request whose constraint dead-ends mid-generation fails; its co-batched neighbour
    finishes. (No 16-digit integer lies in [10**15, 10**15 + 1] for the grammar, so the
    constraint runs out of tokens a few steps in: a real failure of one sequence.)"""
    schema = {"type": "integer", "minimum": 10**15, "maximum": 10**15 + 1}
    failing = {
        "model": "batched",
        "messages": HELLO,
        "max_tokens": 40,
        "temperature": 0,
        "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    }
    long = {
        "model": "batched",
        "messages": HELLO,
        "max_tokens": 600,
        "logit_bias": no_eos,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    with (
        httpx.Client(base_url=neuron.url, timeout=120) as http,
        http.stream("POST", "/v1/chat/completions", json=long) as stream,
    ):
        lines = stream.iter_lines()
        while '"content"' not in next(lines):
            pass
        failed = http.post("/v1/chat/completions", json=failing)
        rest = list(lines)
    assert failed.status_code >= 500, failed.text
    assert "constrained output" in failed.json()["error"]["message"]
    usage = next(json.loads(line[6:]) for line in rest if '"usage":{' in line)["usage"]
    assert usage["completion_tokens"] == 600
    assert any('"finish_reason":"length"' in line for line in rest)


def _conversation(client: openai.OpenAI, model: str, options: dict) -> tuple[list, list]:
    """Two turns of one conversation: the second resends the first and its answer.

    Tools, as agents send them, come with every turn (the template renders them first).
    """
    messages = [{"role": "system", "content": SYSTEM}, *HELLO]
    tools = {"tools": options["tools"]} if "tools" in options else {}
    first, first_usage = _answer(client, model, messages, {"max_tokens": 16, **tools})
    messages += [
        {"role": "assistant", "content": first[0]},
        {"role": "user", "content": "And the next one?"},
    ]
    second, second_usage = _answer(client, model, messages, options)
    return [first, second], [first_usage, second_usage]


def test_prefix_cache_keeps_greedy_outputs_and_reports_cached_tokens(client):
    for name, options in FEATURES.items():
        uncached, plain_usage = _conversation(client, "batched", options)
        cached, usage = _conversation(client, "cached", options)
        assert cached == uncached, name
        assert plain_usage[1].prompt_tokens_details.cached_tokens == 0
        reused = usage[1].prompt_tokens_details.cached_tokens
        # The whole first turn (system prompt, question, answer) was reused.
        assert usage[0].prompt_tokens <= reused < usage[1].prompt_tokens, name


def test_prefix_cache_status_metrics_and_stream_usage(neuron, client):
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Once more."}]
    _answer(client, "cached", messages, {"max_tokens": 4})
    stream = client.chat.completions.create(
        model="cached",
        messages=messages,
        max_tokens=4,
        stream=True,
        stream_options={"include_usage": True},
    )
    usage = list(stream)[-1].usage
    assert usage.prompt_tokens_details.cached_tokens == usage.prompt_tokens - 1
    cache = neuron.loaded("cached")["prefix_cache"]
    assert cache["hits"] >= 1 and cache["lookups"] >= cache["hits"]
    assert 0 < cache["size_bytes"] <= cache["budget_bytes"]
    assert cache["entries"] >= 1 and cache["cached_tokens"] >= usage.prompt_tokens - 1
    metrics = neuron.get("/metrics").text
    cached = _sample(metrics, 'cortex_neuron_prompt_tokens_cached_total{model="cached"}')
    computed = _sample(metrics, 'cortex_neuron_prompt_tokens_computed_total{model="cached"}')
    assert cached >= usage.prompt_tokens - 1 and computed > 0
    assert _sample(metrics, 'cortex_neuron_prompt_tokens_cached_total{model="batched"}') == 0


def _sample(metrics: str, name: str) -> float:
    """A sample's value; 0 when the series has none yet (no request of that model)."""
    line = next((line for line in metrics.splitlines() if line.startswith(name + " ")), None)
    return 0.0 if line is None else float(line.rsplit(" ", 1)[1])


def test_engine_runs_without_deprecation_warnings(demo_models, tmp_path):
    """transformers' FutureWarnings (a deprecated argument) are errors in this worker."""
    with start_neuron(
        demo_models.root, tmp_path, env={"PYTHONWARNINGS": "error::FutureWarning"}
    ) as neuron:
        neuron.load("demo-tiny")
        client = openai.OpenAI(base_url=neuron.url + "/v1", api_key="unused", max_retries=0)
        response = client.chat.completions.create(
            model="demo-tiny", messages=HELLO, max_tokens=8, temperature=0
        )
        assert response.usage.completion_tokens >= 1
        assert "Warning" not in neuron.log_text()
