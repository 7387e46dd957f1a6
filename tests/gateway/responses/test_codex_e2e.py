"""The real Codex CLI (``@openai/codex`` from npm) against a real fleet.

Codex speaks only the Responses API. Its one request per turn carries about 20.5k
tokens of prompt (two developer messages, the user's environment and prompt), nine
tools (a ``namespace`` group and a ``web_search`` built-in among them), ``store: false``
and ``stream: true`` (recorded in ``recorded/codex_0.171.0_exec_request.json``), so it
runs on ``demo-long`` with a 32k context. The config is the README's, as pasted (with
the test gateway's address). Codex runs with its default sandbox and approval settings.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
from pathlib import Path

import pytest
from support.gateway import start_gateway
from support.neuron import start_neuron
from support.npm import npm_binary

pytestmark = pytest.mark.slow

CODEX_VERSION = "0.171.0"
CODEX_TIMEOUT_S = 420
README = Path(__file__).resolve().parents[3] / "README.md"


def readme_codex_config(gateway_url: str) -> str:
    """The README's Codex config.toml, as a user pastes it; only the gateway's address
    differs (tests use a free port)."""
    text = README.read_text()
    section = text[text.index("**Codex CLI**") :]
    start = section.index("```toml\n") + len("```toml\n")
    block = section[start : section.index("\n```", start)]
    assert 'base_url = "http://127.0.0.1:31313/v1"' in block
    return block.replace("http://127.0.0.1:31313", gateway_url) + "\n"


@pytest.fixture(scope="module")
def gateway(demo_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("codex")
    models = root / "models"
    models.mkdir()
    (models / "demo-long").symlink_to(demo_models.long, target_is_directory=True)
    with (
        start_neuron(models, root / "neuron") as neuron,
        start_gateway(
            root / "gateway",
            neurons={"n": neuron.url},
            models=[{"id": "demo-long", "max_seq_len": 32768}],
            config={"auth": {"api_keys": ["codex-key"]}},
            token="codex-key",
        ) as gateway,
    ):
        gateway.wait_neurons_up()
        yield gateway


def test_codex_exec_gets_a_reply_through_the_gateway(gateway, tmp_path):
    codex = npm_binary("@openai/codex", CODEX_VERSION, "codex")
    home = tmp_path / "codex-home"
    home.mkdir()
    (home / "config.toml").write_text(readme_codex_config(gateway.url))
    work = tmp_path / "project"
    work.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "CODEX_HOME": str(home),
        "CORTEX_API_KEY": "codex-key",
    }
    done = subprocess.run(
        [str(codex), "exec", "--skip-git-repo-check", "--ephemeral", "--json", "say hi"],
        cwd=work,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CODEX_TIMEOUT_S,
    )
    log = gateway.log_text()
    assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}\n{log[-3000:]}"
    events = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    kinds = [e["type"] for e in events]
    assert "turn.completed" in kinds and "turn.failed" not in kinds, kinds
    replies = [
        e["item"]["text"]
        for e in events
        if e["type"] == "item.completed" and e["item"]["type"] == "agent_message"
    ]
    assert replies and replies[0], events
    usage = next(e for e in events if e["type"] == "turn.completed")["usage"]
    # What the gateway measured is what Codex was told: its ~20k-token prompt.
    served = re.findall(
        r"status=200 model=demo-long neuron=n endpoint=responses prompt=(\d+) completion=(\d+)",
        log,
    )
    assert served, log[-3000:]
    prompt, completion = (int(n) for n in served[-1])
    assert prompt > 15000
    assert (usage["input_tokens"], usage["output_tokens"]) == (prompt, completion)
    # Codex sends store: false: nothing of its conversation is kept.
    with contextlib.closing(sqlite3.connect(gateway.work_dir / "responses.sqlite3")) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone() == (0,)
