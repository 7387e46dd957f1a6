"""Helpers of the token-pipeline tests (imported by name: this folder is on sys.path)."""

from __future__ import annotations

import json

import httpx2
import openai
from openai.types.chat import ChatCompletionChunk
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


def tokenizer_without_markers(tokenizer: Tokenizer) -> Tokenizer:
    """The demo tokenizer minus its marker tokens (only the ChatML specials stay added)."""
    spec = json.loads(tokenizer.to_str())
    spec["added_tokens"] = [t for t in spec["added_tokens"] if t["special"]]
    return Tokenizer.from_str(json.dumps(spec))


def tokenizer_with_special_markers(tokenizer: Tokenizer) -> Tokenizer:
    """The demo tokenizer with its marker tokens flagged ``special``, as many real models
    ship them (a decoder skipping special tokens then drops their text)."""
    spec = json.loads(tokenizer.to_str())
    for token in spec["added_tokens"]:
        if token["content"] in ("<think>", "</think>", "<tool_call>", "</tool_call>"):
            token["special"] = True
    return Tokenizer.from_str(json.dumps(spec))


def sdk_stream(data: bytes, cast_to: type = ChatCompletionChunk) -> list:
    """Parse SSE ``data`` exactly as the openai SDK parses a streamed HTTP response."""
    request = httpx2.Request("POST", "http://neuron.test/v1/chat/completions")
    response = httpx2.Response(
        200, content=data, request=request, headers={"content-type": "text/event-stream"}
    )
    client = openai.OpenAI(api_key="unused", base_url="http://neuron.test/v1")
    return list(openai.Stream(cast_to=cast_to, response=response, client=client))
