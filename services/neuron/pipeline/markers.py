"""Token ids of the reasoning and tool-call markers, found by probing a tokenizer.

A marker counts only when the tokenizer holds its text as one token (an added token,
as Qwen, Hermes and DeepSeek-style tokenizers do): then the model emits it
deliberately and it can be routed by id. A tokenizer without them gets ``None`` and
its output passes through as text.
"""

from __future__ import annotations

from typing import Any

import msgspec

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
TOOL_OPEN = "<tool_call>"
TOOL_CLOSE = "</tool_call>"


class Markers(msgspec.Struct, frozen=True):
    think_open: int | None = None
    think_close: int | None = None
    tool_open: int | None = None
    tool_close: int | None = None

    @classmethod
    def probe(cls, tokenizer: Any) -> Markers:
        """The marker ids of a ``tokenizers.Tokenizer`` (each may be None)."""
        return cls(
            think_open=single_token_id(tokenizer, THINK_OPEN),
            think_close=single_token_id(tokenizer, THINK_CLOSE),
            tool_open=single_token_id(tokenizer, TOOL_OPEN),
            tool_close=single_token_id(tokenizer, TOOL_CLOSE),
        )

    @classmethod
    def none(cls) -> Markers:
        """No markers: everything is text (legacy completions use this)."""
        return cls()

    @property
    def reasoning(self) -> bool:
        return self.think_open is not None and self.think_close is not None

    @property
    def tool_calls(self) -> bool:
        return self.tool_open is not None and self.tool_close is not None

    def text_of(self, token_id: int) -> str | None:
        """The marker text of ``token_id``, or None when it is no marker."""
        return self._by_id().get(token_id)

    def _by_id(self) -> dict[int, str]:
        pairs = (
            (self.think_open, THINK_OPEN),
            (self.think_close, THINK_CLOSE),
            (self.tool_open, TOOL_OPEN),
            (self.tool_close, TOOL_CLOSE),
        )
        return {token_id: text for token_id, text in pairs if token_id is not None}


def single_token_id(tokenizer: Any, text: str) -> int | None:
    """The id of ``text`` when the tokenizer encodes it as exactly one token."""
    token_id = tokenizer.token_to_id(text)
    if token_id is None:
        return None
    ids = tokenizer.encode(text, add_special_tokens=False).ids
    return token_id if ids == [token_id] else None
