"""Turn a client's request into a job the engine can run, or a clear error.

Runs in the worker's reader thread, so validation errors, template errors and an
over-long prompt are answered at once, before the request queues and before the HTTP
response starts. Everything here is the token pipeline's (prompt, sampling, constrain,
decode): this module only wires it to one loaded model.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from cortex.common.errors import CortexError, decode_body
from cortex.common.neuron import TokenizeRequest
from cortex.common.openai import ChatCompletionRequest, CompletionRequest
from cortex.services.neuron.engines.base import Sequence
from cortex.services.neuron.pipeline import constrain, decode, markers, prompt, sampling


@dataclass
class Job:
    """One request inside the worker: the engine's sequence and its decoding pipeline."""

    rid: str
    seq: Sequence
    pipeline: Any  # decode.TokenPipeline
    prompt_tokens: int
    completion_tokens: int = 0
    clamped: bool = False  # max_tokens was lowered to fit the context
    # Output not yet sent to the supervisor, and when output was last sent.
    held_events: list = field(default_factory=list)
    held_tokens: int = 0
    last_sent: float = 0.0


class JobFactory:
    """Everything about one loaded model that preparing a request needs."""

    def __init__(self, model_dir: str, max_seq_len: int, vocab_size: int) -> None:
        self.model_dir = Path(model_dir)
        self.max_seq_len = max_seq_len
        self.prompts = prompt.PromptBuilder(self.model_dir)
        # The model's logits may be padded beyond the tokenizer; ids must fit both.
        self.vocab_size = min(vocab_size, self.prompts.vocab_size) or vocab_size
        self.tokenizer = self.prompts.tokenizer
        self.markers = self.prompts.markers
        self.eos_ids = tuple(self.prompts.eos_token_ids)

    # ------------------------------------------------------------------ requests

    def chat(self, rid: str, body: bytes, clamp: bool = False) -> Job:
        request = decode_body(body, ChatCompletionRequest)
        params = sampling.SamplingParams.from_chat(request)
        params.check_vocab(self.vocab_size)
        built = self.prompts.chat_prompt(
            request.messages, tools=request.tools, add_generation_prompt=True
        )
        grammar = constrain.request_grammar(request, close_reasoning=built.start_in_reasoning)
        constraint = None
        if grammar is not None:
            constraint = constrain.Constraint(grammar, self.tokenizer, self.eos_ids)
        pipe = decode.TokenPipeline(
            self.tokenizer,
            self.markers,
            stop_strings=params.stop,
            eos_ids=self.eos_ids,
            start_in_reasoning=built.start_in_reasoning,
            expect_tool_call=constrain.tool_call_forced(request),
        )
        return self._job(rid, list(built.ids), params, "messages", pipe, constraint, clamp)

    def completion(self, rid: str, body: bytes, clamp: bool = False) -> Job:
        request = decode_body(body, CompletionRequest)
        params = sampling.SamplingParams.from_completion(request)
        params.check_vocab(self.vocab_size)
        ids = self.prompts.completion_ids(self._single_prompt(request))
        # Legacy completions are plain text: markers are not routed there.
        pipe = decode.TokenPipeline(
            self.tokenizer, markers.Markers.none(), stop_strings=params.stop, eos_ids=self.eos_ids
        )
        return self._job(rid, ids, params, "prompt", pipe, None, clamp)

    def tokenize(self, body: bytes) -> list[int]:
        request = decode_body(body, TokenizeRequest)
        if request.messages is not None:
            return self.prompts.tokenize_messages(
                request.messages, request.tools, add_generation_prompt=request.add_generation_prompt
            )
        if request.text is not None:
            return self.prompts.encode(request.text)
        raise CortexError(
            400, "Send `text` or `messages` to count tokens.", code="invalid_request", param="text"
        )

    # ------------------------------------------------------------------ helpers

    def _job(self, rid, ids, params, prompt_param, pipe, constraint, clamp=False) -> Job:
        if not ids:
            raise CortexError(
                400, "The prompt is empty.", code="invalid_request", param=prompt_param
            )
        max_tokens = params.max_tokens
        room = self.max_seq_len - len(ids)
        clamped = False
        if max_tokens is None:
            if room < 1:
                raise self._too_long(len(ids), 1, prompt_param)
            max_tokens = room
        elif len(ids) + max_tokens > self.max_seq_len:
            if not clamp or room < 1:
                raise self._too_long(len(ids), max_tokens, prompt_param)
            max_tokens, clamped = room, True
        seq = Sequence(
            id=rid,
            prompt_ids=ids,
            max_new_tokens=max_tokens,
            params=params,
            eos_ids=self.eos_ids,
            constraint=constraint,
        )
        return Job(rid=rid, seq=seq, pipeline=pipe, prompt_tokens=len(ids), clamped=clamped)

    def _too_long(self, prompt_tokens: int, max_tokens: int, param: str) -> CortexError:
        return CortexError(
            400,
            f"This model's maximum context length is {self.max_seq_len} tokens. However, you "
            f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the prompt, "
            f"{max_tokens} for the completion). Please reduce the length of the {param} or "
            "of the completion (max_tokens).",
            code="context_length_exceeded",
            param=param,
        )

    @staticmethod
    def _single_prompt(request: CompletionRequest) -> str | list[int]:
        value = request.prompt
        if value is None:
            raise CortexError(400, "`prompt` is required.", code="invalid_request", param="prompt")
        if isinstance(value, str):
            return value
        if value and all(isinstance(v, int) for v in value):
            return value  # type: ignore[return-value]
        if len(value) == 1 and isinstance(value[0], str | list):
            return value[0]
        raise CortexError(
            400,
            "Send one prompt per request: `prompt` as a string or a list of token ids "
            "(batches of prompts are not supported).",
            code="invalid_request",
            param="prompt",
        )


def error_fields(exc: BaseException) -> dict[str, Any]:
    """A Rejected message's fields for any exception raised while preparing."""
    if isinstance(exc, CortexError):
        return {"status": exc.status, "message": exc.message, "code": exc.code, "param": exc.param}
    if isinstance(exc, msgspec.ValidationError):
        return {"status": 400, "message": str(exc), "code": "invalid_request", "param": None}
    return {
        "status": 500,
        "message": f"could not prepare the request: {type(exc).__name__}: {exc}",
        "code": "internal_error",
        "param": None,
    }
