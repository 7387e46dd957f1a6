"""Helpers of the token-pipeline tests (imported by name: this folder is on sys.path)."""

from __future__ import annotations

from tokenizers import Tokenizer

from cortex.services.neuron.pipeline.decode import TokenPipeline
from cortex.services.neuron.pipeline.events import InferenceEvent


def encode(tokenizer: Tokenizer, text: str) -> list[int]:
    return tokenizer.encode(text, add_special_tokens=False).ids


def run(pipeline: TokenPipeline, ids: list[int]) -> list[InferenceEvent]:
    """Push ids until the pipeline stops, then close it: every event, in order."""
    events: list[InferenceEvent] = []
    for token_id in ids:
        events.extend(pipeline.push(token_id))
        if pipeline.stopped:
            break
    events.extend(pipeline.close())
    return events
