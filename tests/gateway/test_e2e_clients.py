"""What real clients rely on, end to end: one real CPU neuron, a real gateway, the
official SDKs and raw HTTP where a client's exact behaviour matters (Claude Code's
context recovery texts, SDK model lookups, LangChain's close after [DONE], the log).

demo-tiny has 2048 positions; ``clamped-tiny`` is the same files with
``clamp_max_tokens``, ``too-long-tiny`` with a profile asking for 32768 positions.
"""

from __future__ import annotations

import json
import os
import re
import subprocess

import anthropic
import httpx
import openai
import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron

pytestmark = pytest.mark.slow

MODELS = [
    {"id": "demo-tiny"},
    {"id": "clamped-tiny", "path": "demo-tiny", "clamp_max_tokens": True},
    {"id": "too-long-tiny", "path": "demo-tiny", "max_seq_len": 32768},
]
HI = [{"role": "user", "content": "hi"}]
LONG = [{"role": "user", "content": "word " * 2100}]
INPUT_TOO_LONG = re.compile(
    r"^input length and `max_tokens` exceed context limit: (\d+) \+ (\d+) > (\d+), "
    r"decrease input length or `max_tokens` and try again$"
)
PROMPT_TOO_LONG = re.compile(r"^prompt is too long: (\d+) tokens > (\d+) maximum$")


@pytest.fixture(scope="module")
def neuron(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("clients")
    models = root / "models"
    models.mkdir()
    (models / "demo-tiny").symlink_to(demo_models.tiny, target_is_directory=True)
    with start_neuron(models, root / "neuron") as neuron:
        yield neuron


@pytest.fixture(scope="module")
def gateway(neuron, tmp_path_factory):
    work = tmp_path_factory.mktemp("gateway")
    config = {"aliases": {"claude-*": "demo-tiny"}}
    with start_gateway(work, neurons={"n": neuron.url}, models=MODELS, config=config) as gateway:
        gateway.wait_neurons_up()
        yield gateway


def claude(gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key="x", max_retries=0)


def oai(gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="x", max_retries=0)


# --------------------------------------------------------------------------- context


@pytest.mark.parametrize("stream", [False, True])
def test_max_tokens_beyond_the_context_gets_anthropics_exact_text(gateway, stream):
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude(gateway).messages.create(
            model="demo-tiny", max_tokens=32000, messages=HI, stream=stream, timeout=60
        )
    error = caught.value
    assert error.status_code == 400 and error.body["error"]["type"] == "invalid_request_error"
    found = INPUT_TOO_LONG.match(error.body["error"]["message"])
    assert found, error.body
    prompt, max_tokens, limit = (int(n) for n in found.groups())
    assert (max_tokens, limit) == (32000, 2048) and 0 < prompt < 100
    # What Claude Code then retries with fits.
    retry = claude(gateway).messages.create(
        model="demo-tiny", max_tokens=limit - prompt, messages=HI, extra_body={"temperature": 0}
    )
    # The neuron may serve part of the prompt from its prefix cache: Anthropic counts
    # those tokens as cache_read_input_tokens, apart from input_tokens.
    assert retry.usage.input_tokens + retry.usage.cache_read_input_tokens == prompt


def test_a_prompt_beyond_the_context_is_prompt_is_too_long_on_messages_and_count_tokens(
    gateway,
):
    client = claude(gateway)
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="demo-tiny", max_tokens=10, messages=LONG)
    found = PROMPT_TOO_LONG.match(caught.value.body["error"]["message"])
    assert found and int(found[2]) == 2048 and int(found[1]) > 2048, caught.value.body
    with pytest.raises(anthropic.BadRequestError) as counted:
        client.messages.count_tokens(model="demo-tiny", messages=LONG)
    assert counted.value.body["error"]["message"] == caught.value.body["error"]["message"]
    assert counted.value.body["error"]["type"] == "invalid_request_error"
    # The OpenAI dialect keeps OpenAI's wording.
    with pytest.raises(openai.BadRequestError) as wording:
        oai(gateway).chat.completions.create(model="demo-tiny", max_tokens=10, messages=LONG)
    assert wording.value.code == "context_length_exceeded"
    assert "maximum context length is 2048 tokens" in wording.value.message


@pytest.mark.parametrize("stream", [False, True])
def test_clamp_max_tokens_lowers_it_to_what_fits_and_says_so_in_a_header(gateway, stream):
    raw = claude(gateway).messages.with_raw_response.create(
        model="clamped-tiny",
        max_tokens=32000,
        messages=HI,
        stream=stream,
        extra_body={"temperature": 0},
        timeout=60,
    )
    clamped = int(raw.headers["x-cortex-max-tokens-clamped"])
    counted = claude(gateway).messages.count_tokens(model="clamped-tiny", messages=HI)
    assert clamped == 2048 - counted.input_tokens
    raw.parse()  # the answer is whole
    chat = oai(gateway).chat.completions.with_raw_response.create(
        model="clamped-tiny", max_tokens=4000, messages=HI, stream=stream
    )
    assert int(chat.headers["x-cortex-max-tokens-clamped"]) == clamped
    # A max_tokens that fits is left alone, and says nothing.
    fits = oai(gateway).chat.completions.with_raw_response.create(
        model="clamped-tiny", max_tokens=5, messages=HI
    )
    assert "x-cortex-max-tokens-clamped" not in fits.headers
    assert fits.parse().usage.completion_tokens <= 5


# --------------------------------------------------------------------------- models API


def test_openai_sdk_retrieves_a_model_and_an_alias(gateway):
    client = oai(gateway)
    model = client.models.retrieve("demo-tiny")
    assert (model.id, model.object, model.owned_by) == ("demo-tiny", "model", "cortex")
    assert model.model_extra["cortex"]["available_on"] == ["n"]
    alias = client.models.retrieve("claude-sonnet-4-5")
    assert alias.model_extra["cortex"] == {"state": "alias", "alias_of": "demo-tiny"}
    with pytest.raises(openai.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.code == "model_not_found" and "no-such-model" in caught.value.message


def test_anthropic_sdk_lists_pages_and_retrieves_models(gateway):
    client = claude(gateway)
    listed = client.models.list()
    ids = [m.id for m in listed.data]
    assert ids == [m.id for m in oai(gateway).models.list().data]
    assert ids == ["demo-tiny", "clamped-tiny", "too-long-tiny"]
    for info in listed.data:
        assert info.type == "model" and info.display_name == info.id
        assert info.created_at.tzinfo is not None
    assert (listed.has_more, listed.first_id, listed.last_id) == (False, ids[0], ids[-1])
    first = client.models.list(limit=1)
    assert [m.id for m in first.data] == ids[:1] and first.has_more
    second = client.models.list(limit=1, after_id=ids[0])
    assert [m.id for m in second.data] == ids[1:2] and second.has_more
    assert [m.id for page in first.iter_pages() for m in page.data] == ids
    assert client.models.retrieve("demo-tiny").id == "demo-tiny"
    assert client.models.retrieve("claude-opus-4-8").display_name == "claude-opus-4-8"
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.models.retrieve("no-such-model")
    assert caught.value.body["type"] == "error"
    assert caught.value.body["error"]["type"] == "not_found_error"


def test_the_front_door_answers_head_and_get(gateway):
    head = httpx.head(gateway.url + "/")
    assert head.status_code == 200 and head.content == b""
    about = httpx.get(gateway.url + "/")
    assert about.status_code == 200
    assert about.json()["name"] == "cortex-gateway"
    assert "POST /v1/messages" in about.json()["endpoints"]


# --------------------------------------------------------------------------- dialects


def test_fields_openai_would_refuse_are_refused_naming_the_field(gateway):
    client = oai(gateway)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="demo-tiny", messages=HI, max_tokens=3, extra_body={"system": "Be brief."}
        )
    assert caught.value.param == "system" and caught.value.code == "unknown_parameter"
    message = caught.value.body["message"]
    assert message.startswith("Unrecognized request argument supplied: system.")
    assert "/v1/messages" in message
    with pytest.raises(openai.BadRequestError) as legacy:
        client.completions.create(
            model="demo-tiny", prompt="hi", max_tokens=3, extra_body={"messages": []}
        )
    assert legacy.value.param == "messages"
    # What OpenAI accepts and a local model ignores still passes.
    reply = client.chat.completions.create(
        model="demo-tiny", messages=HI, max_tokens=3, store=False, service_tier="auto"
    )
    assert reply.choices[0].message.role == "assistant"


def test_v1_models_and_fleet_agree_on_the_context_and_a_profile_beyond_the_model_is_refused(
    gateway,
):
    oai(gateway).chat.completions.create(model="demo-tiny", messages=HI, max_tokens=2)
    cards = {m.id: m.model_extra["cortex"] for m in oai(gateway).models.list().data}
    [placement] = gateway.placements("demo-tiny")
    assert cards["demo-tiny"]["max_seq_len"] == placement["max_seq_len"] == 2048
    # Never advertised above the model's own context; a load asking for more is refused.
    assert cards["too-long-tiny"]["max_seq_len"] == 2048
    with pytest.raises(openai.APIStatusError) as caught:
        oai(gateway).chat.completions.create(model="too-long-tiny", messages=HI, max_tokens=2)
    message = caught.value.body["message"]
    assert "max_seq_len 32768" in message and "2048" in message, message
    assert not gateway.placements("too-long-tiny")


# --------------------------------------------------------------------------- logs, metrics


def log_line(gateway, request_id: str) -> str:
    """The one line the gateway logged for ``request_id``."""

    def lines() -> list[str]:
        return [line for line in gateway.log_text().splitlines() if f" {request_id} " in line]

    gateway.wait_for(lambda: lines(), timeout=10)
    (line,) = lines()
    return line


def requests_total(gateway, **labels) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for family in text_string_to_metric_families(gateway.metrics()):
        for sample in family.samples:
            if sample.name == "cortex_gateway_requests_total" and all(
                sample.labels.get(k) == v for k, v in labels.items()
            ):
                total += sample.value
    return total


@pytest.mark.parametrize(
    ("path", "body", "end"),
    [
        (
            "/v1/chat/completions",
            {"model": "demo-tiny", "messages": HI, "max_tokens": 4, "stream": True},
            b"data: [DONE]",
        ),
        (
            "/v1/messages",
            {"model": "demo-tiny", "messages": HI, "max_tokens": 4, "stream": True},
            b"event: message_stop",
        ),
    ],
)
def test_a_stream_the_client_closes_right_after_its_end_is_a_200(gateway, path, body, end):
    """LangChain's ChatOpenAI.stream closes the connection as soon as [DONE] arrives."""
    rid = f"close-after-end-{path.rsplit('/', 1)[-1]}"
    endpoint = "chat" if path.endswith("completions") else "messages"
    before = requests_total(gateway, model="demo-tiny", endpoint=endpoint, status="200")
    seen = b""
    with (
        httpx.Client(timeout=30) as client,
        client.stream(
            "POST", gateway.url + path, json=body, headers={"x-request-id": rid}
        ) as response,
    ):
        assert response.status_code == 200
        for piece in response.iter_raw():
            seen += piece
            if end in seen:
                break  # and close, as LangChain does
    line = log_line(gateway, rid)
    assert f"POST {path} status=200 model=demo-tiny neuron=n" in line, line
    gateway.wait_for(
        lambda: (
            requests_total(gateway, model="demo-tiny", endpoint=endpoint, status="200")
            == before + 1
        ),
        timeout=10,
    )
    assert requests_total(gateway, model="demo-tiny", endpoint=endpoint, status="499") == 0


def test_every_answer_is_one_log_line_with_its_reason(gateway):
    def post(path: str, rid: str, **kwargs) -> httpx.Response:
        return httpx.post(gateway.url + path, headers={"x-request-id": rid}, timeout=30, **kwargs)

    invalid = post("/v1/messages", "log-invalid", json={"model": "demo-tiny", "messages": HI})
    assert invalid.status_code == 400
    line = log_line(gateway, "log-invalid")
    assert "POST /v1/messages status=400" in line and "max_tokens" in line, line

    unknown = post("/v1/chat/completions", "log-unknown", json={"model": "nope", "messages": HI})
    assert unknown.status_code == 404
    line = log_line(gateway, "log-unknown")
    assert "status=404 model=nope" in line and "reason=\"The model 'nope'" in line, line

    assert post("/v1/nowhere", "log-route", json={}).status_code == 404
    assert "POST /v1/nowhere status=404" in log_line(gateway, "log-route")

    counted = post(
        "/v1/messages/count_tokens?beta=true",
        "log-count",
        json={"model": "claude-sonnet-4-5", "messages": HI},
    )
    assert counted.status_code == 200
    line = log_line(gateway, "log-count")
    assert "POST /v1/messages/count_tokens?beta=true status=200" in line, line
    assert "model=demo-tiny neuron=n" in line and "total_ms=" in line

    ok = post("/v1/chat/completions", "log-ok", json={"model": "demo-tiny", "messages": HI})
    assert ok.status_code == 200
    line = log_line(gateway, "log-ok")
    assert "status=200 model=demo-tiny neuron=n endpoint=chat prompt=" in line, line
    assert "reason=" not in line


# --------------------------------------------------------------------------- body limits


def test_what_the_gateway_accepts_the_neuron_accepts_and_a_413_names_its_limit(gateway, neuron):
    blob = "x" * (12 * 1024 * 1024)  # above the neuron's former 10 MB, below both limits
    reply = oai(gateway).chat.completions.create(
        model="demo-tiny", messages=HI, max_tokens=2, metadata={"blob": blob}
    )
    assert reply.choices[0].message.role == "assistant"
    too_big = httpx.post(
        neuron.url + "/v1/chat/completions",
        content=b'{"model": "demo-tiny", "messages": [], "pad": "' + b"x" * (17 << 20) + b'"}',
        headers={"content-type": "application/json"},
        timeout=60,
    )
    assert too_big.status_code == 413
    message = too_big.json()["error"]["message"]
    assert f"{16 << 20} bytes, neuron.max_body_bytes" in message, message


NODE_LOOKUPS = """
const OpenAI = require("openai");
const Anthropic = require("@anthropic-ai/sdk");
const [base] = process.argv.slice(2);
(async () => {
  const openai = new OpenAI({ baseURL: base + "/v1", apiKey: "x", maxRetries: 0 });
  const anthropic = new Anthropic({ baseURL: base, apiKey: "x", maxRetries: 0 });
  const out = {
    openai: await openai.models.retrieve("demo-tiny"),
    anthropic: await anthropic.models.retrieve("demo-tiny"),
    anthropicList: (await anthropic.models.list()).data.map((m) => m.id),
  };
  try { await openai.models.retrieve("no-such-model"); } catch (e) { out.openai404 = e.status; }
  try { await anthropic.models.retrieve("no-such-model"); }
  catch (e) { out.anthropic404 = e.error; }
  console.log(JSON.stringify(out));
})();
"""


def test_node_sdks_retrieve_and_list_models(gateway, tmp_path):
    from support.claude_code import CACHE_DIR, NotInstallable, npm_install

    modules = CACHE_DIR.parent / "node-sdks" / "node_modules"
    if not (modules / "openai").exists() or not (modules / "@anthropic-ai" / "sdk").exists():
        try:
            npm_install(modules.parent, "openai@6", "@anthropic-ai/sdk@1")
        except NotInstallable as exc:
            pytest.skip(f"the Node SDKs cannot be installed here: {exc}")
    script = tmp_path / "lookups.js"
    script.write_text(NODE_LOOKUPS)
    done = subprocess.run(
        ["node", str(script), gateway.url],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NODE_PATH": str(modules)},
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["openai"]["id"] == "demo-tiny" and out["openai"]["object"] == "model"
    assert out["anthropic"]["type"] == "model" and out["anthropic"]["id"] == "demo-tiny"
    assert "demo-tiny" in out["anthropicList"]
    assert out["openai404"] == 404
    assert out["anthropic404"]["error"]["type"] == "not_found_error"


def test_the_neuron_logs_why_it_refused_a_request(gateway, neuron):
    refused = httpx.post(
        gateway.url + "/v1/chat/completions",
        json={"model": "demo-tiny", "messages": HI, "max_tokens": 32000},
        headers={"x-request-id": "neuron-refusal"},
        timeout=30,
    )
    assert refused.status_code == 400
    lines = neuron.log_text().splitlines()
    (line,) = [line for line in lines if "request neuron-refusal POST" in line]
    assert "POST /v1/chat/completions status=400 code=context_length_exceeded" in line, line
    assert "reason=This model's maximum context length is 2048 tokens" in line
