"""The real Claude Code CLI (npm) against a real gateway and CPU neuron, unmodified:
nothing but ANTHROPIC_BASE_URL and ANTHROPIC_AUTH_TOKEN (and a HOME of its own).

demo-long (131072 positions) serves ``claude-*``, as in ``make demo``;
``claude-sonnet-*`` goes to demo-80k, a copy with 81920 positions: it holds Claude
Code's ~63k-token prompt but not the prompt plus its ``max_tokens`` of 32000, so Claude
Code must recover by itself from Anthropic's context-limit text.

Prefill of these prompts takes a minute or more on a 2-core machine, hence four runs:
the default model, a second and a third turn of it with ``--continue`` (the third served
from the prefix cache), and the sonnet name.
"""

from __future__ import annotations

import re

import pytest
from support.claude_code import NotInstallable, claude_code, run_claude
from support.gateway import start_gateway
from support.models import with_context
from support.neuron import start_neuron

pytestmark = pytest.mark.slow

MODELS = [{"id": "demo-long", "max_seq_len": 131072}, {"id": "demo-80k", "max_seq_len": 81920}]
ALIASES = {"claude-sonnet-*": "demo-80k", "claude-*": "demo-long"}
RUN_TIMEOUT_S = 600
MESSAGES_LINE = re.compile(
    r"POST /v1/messages\?beta=true status=(\d+) model=(\S+) neuron=\S+ endpoint=messages "
    r"prompt=(\d+)(?: completion=(\d+))?"
)


@pytest.fixture(scope="module")
def binary():
    try:
        return claude_code()
    except NotInstallable as exc:
        pytest.skip(f"Claude Code cannot be installed here: {exc}")


@pytest.fixture(scope="module")
def gateway(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("claude-code")
    models = root / "models"
    models.mkdir()
    (models / "demo-long").symlink_to(demo_models.long, target_is_directory=True)
    with_context(demo_models.long, models / "demo-80k", 81920)
    with (
        start_neuron(models, root / "neuron") as neuron,
        start_gateway(
            root / "gateway", neurons={"n": neuron.url}, models=MODELS, config={"aliases": ALIASES}
        ) as gateway,
    ):
        gateway.wait_neurons_up()
        for model in ("demo-long", "demo-80k"):  # so no run waits for a cold load
            assert gateway.post(f"/fleet/models/{model}/load").status_code < 300
        gateway.wait_for(
            lambda: (
                {p["model"] for p in gateway.placements() if p["state"] == "loaded"}
                == {"demo-long", "demo-80k"}
            ),
            timeout=180,
        )
        yield gateway


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    """HOME and working folder of one Claude Code user (``--continue`` finds its turn)."""
    root = tmp_path_factory.mktemp("claude-user")
    return {"home": root / "home", "cwd": root / "project"}


def messages_lines(gateway) -> list[tuple[int, str, int, int]]:
    """(status, model, prompt, completion tokens) of every /v1/messages request answered."""
    return [
        (int(m[1]), m[2], int(m[3]), int(m[4] or 0))
        for m in map(MESSAGES_LINE.search, gateway.log_text().splitlines())
        if m
    ]


def lines_after(gateway, before: int) -> list[tuple[int, str, int, int]]:
    """The request lines past the first ``before``: the gateway writes a stream's line
    once its relay ends, which can be just after Claude Code has read [DONE] and exited."""
    return gateway.wait_for(lambda: messages_lines(gateway)[before:], timeout=30)


def succeeded(run) -> dict:
    reply = run.reply
    assert run.returncode == 0 and not reply["is_error"], (reply, run.stderr[-2000:])
    assert reply["subtype"] == "success" and reply["num_turns"] >= 1
    return reply


def test_the_default_model_completes(binary, gateway, session):
    run = run_claude(binary, gateway.url, "say hi", **session, timeout=RUN_TIMEOUT_S)
    reply = succeeded(run)
    assert reply["usage"]["input_tokens"] > 20000, reply["usage"]
    # Its default model sends a system message mid-conversation: accepted, first time.
    assert [status for status, _, _, _ in lines_after(gateway, 0)] == [200]
    assert messages_lines(gateway)[0][1] == "demo-long"


def test_a_second_turn_continues_the_conversation(binary, gateway, session):
    _, _, first_prompt, first_completion = messages_lines(gateway)[0]
    run = run_claude(
        binary, gateway.url, "and again", "--continue", **session, timeout=RUN_TIMEOUT_S
    )
    succeeded(run)
    status, model, prompt, _ = lines_after(gateway, 1)[-1]
    assert (status, model) == (200, "demo-long")
    # The first turn and its answer came along (less the few dozen tokens of "(1M
    # context)" that only a fresh HOME's first run writes into its system prompt).
    assert prompt > first_prompt + first_completion - 100


def test_a_third_turn_prefills_only_what_is_new(binary, gateway, session):
    # Claude Code's first run in a fresh HOME names a "(1M context)" model in its system
    # prompt and later runs do not, so the second turn shares little with the first; from
    # then on its prompts are stable and the neuron's prefix cache serves the rest.
    run = run_claude(
        binary, gateway.url, "once more", "--continue", **session, timeout=RUN_TIMEOUT_S
    )
    usage = succeeded(run)["usage"]
    prompt = usage["input_tokens"] + usage["cache_read_input_tokens"]
    assert usage["cache_read_input_tokens"] > 0.9 * prompt, usage


def test_a_sonnet_name_recovers_from_a_context_too_small_for_its_max_tokens(
    binary, gateway, tmp_path
):
    before = len(messages_lines(gateway))
    run = run_claude(
        binary,
        gateway.url,
        "say hi",
        "--model",
        "claude-sonnet-4-5",
        home=tmp_path / "home",
        cwd=tmp_path / "project",
        timeout=RUN_TIMEOUT_S,
    )
    succeeded(run)
    gateway.wait_for(lambda: len(messages_lines(gateway)) >= before + 2, timeout=30)
    tried = messages_lines(gateway)[before:]
    assert [(status, model) for status, model, _, _ in tried] == [
        (400, "demo-80k"),
        (200, "demo-80k"),
    ]
    refusal = next(
        line for line in gateway.log_text().splitlines() if "status=400 model=demo-80k" in line
    )
    assert "input length and `max_tokens` exceed context limit:" in refusal, refusal
    assert "+ 32000 > 81920" in refusal
