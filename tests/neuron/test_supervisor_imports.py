"""The supervisor never imports torch, transformers or exllamav2: engines live in workers.

Checked in a fresh interpreter that serves load, chat, tokenize (on disk), status,
metrics and unload through the real app, then lists what it imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

SERVE_AND_REPORT = """
import json, sys
from litestar.testing import TestClient
from cortex.common.config import NeuronSection
from cortex.services.neuron.app import create_app

settings = NeuronSection(models_dir=sys.argv[1], prewarm_worker=False, cpu_threads=1)
with TestClient(create_app(settings), timeout=120) as client:
    assert client.post("/models/load", json={"model": "demo-tiny"}).status_code == 200
    chat = client.post(
        "/v1/chat/completions",
        json={"model": "demo-tiny", "messages": [{"role": "user", "content": "hi"}],
              "max_tokens": 3},
    )
    assert chat.status_code == 200, chat.text
    assert client.post("/tokenize", json={"model": "demo-small", "text": "hi"}).status_code == 200
    assert client.get("/status").status_code == 200
    assert client.get("/metrics").status_code == 200
    assert client.post("/models/unload", json={"model": "demo-tiny"}).status_code == 200
print(json.dumps(sorted(m for m in ("torch", "transformers", "exllamav2") if m in sys.modules)))
"""


def test_supervisor_serves_without_importing_engines(demo_models):
    result = subprocess.run(
        [sys.executable, "-c", SERVE_AND_REPORT, str(demo_models.root)],
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    imported = json.loads(result.stdout.strip().splitlines()[-1])
    assert imported == []
