"""Fixtures of the token-pipeline tests: the demo model's real tokenizer and helpers."""

from __future__ import annotations

import pytest
from tokenizers import Tokenizer

from cortex.services.neuron.pipeline.markers import Markers


@pytest.fixture(scope="session")
def tokenizer(demo_models) -> Tokenizer:
    return Tokenizer.from_file(str(demo_models.tiny / "tokenizer.json"))


@pytest.fixture(scope="session")
def markers(tokenizer) -> Markers:
    return Markers.probe(tokenizer)


@pytest.fixture(scope="session")
def eos_id(tokenizer) -> int:
    return tokenizer.token_to_id("<|im_end|>")
