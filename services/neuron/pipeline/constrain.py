"""Constrained decoding: forced tool calls and JSON output, on any model.

When ``tool_choice`` is "required" or names a function, the output must be
``<tool_call>\\n{"name": "<fn>", "arguments": {...}}\\n</tool_call>`` then EOS, with
arguments valid for the function's schema. ``response_format`` ``json_object`` /
``json_schema`` constrains plain output the same way. The model still chooses every
free token (string contents, numbers, enum members, optional properties); the
grammar forces only what has a single legal continuation.

Engines drive it through ``ConstrainedSampler.sample(logits, generated_ids)``, a
drop-in for ``Sampler.sample``; or through ``Constraint`` directly: ``forced()`` (the
one legal next token, if any), ``is_allowed(id)``, ``advance(id)``, ``allowed_ids()``
and ``done``. Token bytes are computed once per tokenizer (``vocab.vocab_for``), and a
sampled token is checked rather than the whole vocabulary scanned: only when several
draws in a row are illegal does it build the mask of legal tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cortex.common.errors import CortexError
from cortex.common.openai import (
    ChatCompletionRequest,
    NamedToolChoice,
    ResponseFormat,
    Tool,
    ToolChoice,
)
from cortex.services.neuron.pipeline import grammar
from cortex.services.neuron.pipeline.grammar import Alt, Lit, Node, Seq
from cortex.services.neuron.pipeline.markers import THINK_CLOSE, TOOL_CLOSE, TOOL_OPEN
from cortex.services.neuron.pipeline.sampling import Sampler, token_at
from cortex.services.neuron.pipeline.schema import Limits, schema_grammar
from cortex.services.neuron.pipeline.vocab import TokenVocab, vocab_for

if TYPE_CHECKING:
    import torch

__all__ = [
    "ConstrainedSampler",
    "Constraint",
    "ConstraintError",
    "Limits",
    "request_grammar",
    "response_format_grammar",
    "tool_call_forced",
    "tool_call_grammar",
]

_CACHE_LIMIT = 200_000
_REASONING_CLOSE = THINK_CLOSE + "\n\n"


class ConstraintError(CortexError):
    def __init__(self, message: str) -> None:
        super().__init__(500, message, code="constraint_error")


# ---------------------------------------------------------------------- grammars


def tool_call_forced(request: ChatCompletionRequest) -> bool:
    """Whether the request forces a tool call ("required" or a named function)."""
    choice = request.tool_choice
    return choice == "required" or isinstance(choice, NamedToolChoice)


def tool_call_grammar(
    tools: list[Tool] | None,
    tool_choice: ToolChoice | None,
    *,
    limits: Limits | None = None,
    close_reasoning: bool = False,
) -> Node:
    """``<tool_call>\\n{"name": ..., "arguments": ...}\\n</tool_call>`` for the chosen tools.

    ``close_reasoning``: the prompt left ``<think>`` open, so close it first.
    """
    if not tools:
        raise CortexError(
            400,
            "`tool_choice` requires a tool call but `tools` is empty: send the functions "
            "the model may call.",
            code="invalid_request",
            param="tool_choice",
        )
    chosen = list(enumerate(tools))
    if isinstance(tool_choice, NamedToolChoice):
        name = tool_choice.function.name
        chosen = [(i, tool) for i, tool in chosen if tool.function.name == name]
        if not chosen:
            known = ", ".join(repr(tool.function.name) for tool in tools)
            raise CortexError(
                400,
                f"`tool_choice` names function {name!r}, which is not in `tools` ({known}).",
                code="invalid_request",
                param="tool_choice",
            )
    options = [
        Seq(
            Lit(f'{_json(tool.function.name)}, "arguments": '),
            _arguments(tool, index, limits),
        )
        for index, tool in chosen
    ]
    opening = (_REASONING_CLOSE if close_reasoning else "") + TOOL_OPEN + '\n{"name": '
    return Seq(
        Lit(opening), options[0] if len(options) == 1 else Alt(*options), Lit("}\n" + TOOL_CLOSE)
    )


def response_format_grammar(
    response_format: ResponseFormat | None,
    *,
    limits: Limits | None = None,
    close_reasoning: bool = False,
) -> Node | None:
    """The grammar of ``json_object`` / ``json_schema`` output; None for plain text."""
    if response_format is None or response_format.type == "text":
        return None
    schema: Any = {"type": "object"}
    if response_format.type == "json_schema":
        spec = response_format.json_schema or {}
        schema = spec.get("schema", schema)
    body = schema_grammar(schema, limits=limits, param="response_format")
    return Seq(Lit(_REASONING_CLOSE), body) if close_reasoning else body


def request_grammar(
    request: ChatCompletionRequest,
    *,
    limits: Limits | None = None,
    close_reasoning: bool = False,
) -> Node | None:
    """The constraint a chat request asks for (a forced tool call wins), or None.

    Raises a 400 ``CortexError`` for a request that cannot be honoured, so the
    supervisor can call it to validate before anything is queued.
    """
    if tool_call_forced(request):
        return tool_call_grammar(
            request.tools, request.tool_choice, limits=limits, close_reasoning=close_reasoning
        )
    return response_format_grammar(
        request.response_format, limits=limits, close_reasoning=close_reasoning
    )


def _arguments(tool: Tool, index: int, limits: Limits | None) -> Node:
    parameters = tool.function.parameters
    if not parameters:
        return Lit("{}")
    param = f"tools[{index}].function.parameters"
    return schema_grammar(parameters, limits=limits, param=param)


def _json(value: str) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)


# ---------------------------------------------------------------------- the constraint


class Constraint:
    """A grammar applied to tokens: what may come next, and what must."""

    def __init__(self, grammar_node: Node, vocab: TokenVocab | Any, eos_ids: Sequence[int]) -> None:
        if not isinstance(vocab, TokenVocab):
            vocab = vocab_for(vocab)  # a tokenizers.Tokenizer
        if not eos_ids:
            raise ValueError("a constraint needs the model's EOS id(s) to end the output")
        self.vocab = vocab
        self._eos = list(eos_ids)
        self._eos_set = frozenset(eos_ids)
        self._configs = grammar.start(grammar_node)
        self._forced: list[int] | None = None
        self._cache: dict[tuple[frozenset, int], frozenset] = {}
        self.done = False

    @property
    def complete(self) -> bool:
        """The grammar is satisfied: EOS may come now."""
        return grammar.complete(self._configs)

    def is_allowed(self, token_id: int) -> bool:
        if self.done:
            return False
        if token_id in self._eos_set:
            return self.complete
        vocab = self.vocab
        if not 0 <= token_id < vocab.size or not vocab.free[token_id]:
            return False
        return bool(self._feed(self._configs, vocab.token_bytes[token_id]))

    def advance(self, token_id: int) -> None:
        """Take ``token_id`` (sampled or forced). Raises ``ConstraintError`` if illegal."""
        if self.done:
            raise ConstraintError("the constrained output is already complete")
        if self._forced and self._forced[0] == token_id:
            self._forced.pop(0)
        else:
            self._forced = None
        if token_id in self._eos_set:
            if not self.complete:
                raise ConstraintError(f"EOS (token {token_id}) before the output is complete")
            self.done = True
            return
        data = self.vocab.token_bytes[token_id] if 0 <= token_id < self.vocab.size else None
        following = self._feed(self._configs, data) if data else frozenset()
        if not following:
            raise ConstraintError(f"token {token_id} ({data!r}) breaks the constrained output")
        self._configs = following

    def forced(self) -> int | None:
        """The next token when only one continuation is legal (structure, or EOS)."""
        if self.done:
            return None
        if self._forced is None:
            self._forced = self._forced_run()
        return self._forced[0] if self._forced else None

    def forced_ids(self) -> list[int]:
        """All tokens forced from here, in order (an engine may feed them in one pass)."""
        if self.forced() is None:
            return []
        return list(self._forced or ())

    def allowed_ids(self) -> list[int]:
        """Every legal next token (the slow path: checks all candidates)."""
        if self.done:
            return []
        vocab, configs = self.vocab, self._configs
        room = grammar.string_room(configs)
        if room is not None:
            # Inside a string: plain text that fits is legal without a walk; only the
            # few tokens holding quotes, escapes or partial characters are checked.
            chars, other = vocab.plain_text()
            fits = ((chars >= 1) & (chars <= room)).nonzero()[0].tolist()
            allowed = fits + [t for t in other if self._feed(configs, vocab.token_bytes[t])]
        else:
            allowed = [
                token_id
                for byte in grammar.next_bytes(configs)
                for token_id in vocab.by_first_byte[byte]
                if self._feed(configs, vocab.token_bytes[token_id])
            ]
        if self.complete:
            allowed.extend(self._eos)
        return allowed

    def _forced_run(self) -> list[int]:
        configs = self._configs
        if configs == {None}:
            return [self._eos[0]]
        run = bytearray()
        while not grammar.complete(configs):
            choices = grammar.next_bytes(configs)
            if len(choices) != 1:
                break
            byte = choices.pop()
            run.append(byte)
            configs = self._feed(configs, bytes([byte]))
        text = _utf8_prefix(bytes(run))
        if not text:
            return []
        ids = self.vocab.encode_exact(text)
        if not ids:
            return []
        if len(text.encode()) == len(run) and configs == {None}:
            ids.append(self._eos[0])
        return ids

    def _feed(self, configs: frozenset, data: bytes | None) -> frozenset:
        if data is None:  # a token without bytes (never offered: not free)
            return frozenset()
        cache = self._cache
        for byte in data:
            key = (configs, byte)
            following = cache.get(key)
            if following is None:
                if len(cache) > _CACHE_LIMIT:
                    cache.clear()
                following = cache[key] = grammar.step(configs, byte)
            if not following:
                return following
            configs = following
        return configs


def _utf8_prefix(data: bytes) -> str:
    """The longest prefix of ``data`` that is whole UTF-8 characters, decoded."""
    for end in range(len(data), max(len(data) - 4, -1), -1):
        try:
            return data[:end].decode()
        except UnicodeDecodeError:
            continue
    return ""


class ConstrainedSampler:
    """``Sampler`` + ``Constraint``: forced tokens as is, free ones drawn and checked.

    A draw from the sampler's distribution (temperature, top_k/top_p/min_p applied) is
    checked against the grammar; an illegal token is removed and the draw repeated, up
    to ``tries`` times. Then the legal tokens are listed and the sampler chooses among
    them (all others masked out before truncation, so a legal token always remains).
    """

    def __init__(self, sampler: Sampler, constraint: Constraint, *, tries: int = 8) -> None:
        self.sampler = sampler
        self.constraint = constraint
        self.tries = tries

    @property
    def done(self) -> bool:
        return self.constraint.done

    def sample(self, logits: torch.Tensor, generated_ids: Sequence[int]) -> int:
        constraint = self.constraint
        token = constraint.forced()
        if token is None:
            scores = self.sampler.adjust(logits, generated_ids)
            token = self._checked_draw(scores)
            if token is None:
                token = self._masked_choice(scores)
        constraint.advance(token)
        return token

    def _checked_draw(self, scores: torch.Tensor) -> int | None:
        import torch

        sampler, constraint = self.sampler, self.constraint
        if sampler.params.greedy:
            top = torch.topk(scores, min(self.tries, scores.numel())).indices.tolist()
            return next((t for t in top if constraint.is_allowed(t)), None)
        ids, probs = sampler.candidates(scores)
        for _ in range(self.tries):
            if not float(probs.sum()) > 0.0:
                return None
            position = sampler.draw(probs)
            token = token_at(ids, position)
            if constraint.is_allowed(token):
                return token
            probs[position] = 0.0
        return None

    def _masked_choice(self, scores: torch.Tensor) -> int:
        allowed = [t for t in self.constraint.allowed_ids() if t < scores.numel()]
        if not allowed:
            raise ConstraintError("no token of this model can continue the constrained output")
        import torch

        index = torch.tensor(allowed, device=scores.device)
        masked = torch.full_like(scores, float("-inf"))
        # Finite even where the model said -inf, so the choice is always defined.
        masked[index] = scores[index].clamp(min=-1e30)
        return self.sampler.choose(masked)
