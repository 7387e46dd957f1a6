"""One real neuron per test session (CPU backend, demo models), shared by the e2e tests.

Tests that unload, crash or reconfigure load their own copy of a demo model under
another id (``LoadRequest.id``) or start their own neuron, so they never disturb the
shared ``demo-tiny``.
"""

from __future__ import annotations

import openai
import pytest
from support.neuron import start_neuron


@pytest.fixture(scope="session")
def neuron(demo_models, tmp_path_factory):
    with start_neuron(
        demo_models.root, tmp_path_factory.mktemp("neuron"), settings={"max_concurrency": 2}
    ) as running:
        running.load("demo-tiny")
        yield running


@pytest.fixture
def client(neuron) -> openai.OpenAI:
    return openai.OpenAI(base_url=neuron.url + "/v1", api_key="unused", max_retries=0)
