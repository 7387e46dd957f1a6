"""Tool names both ways: Anthropic allows names OpenAI-style upstreams refuse.

OpenAI function names must match ``^[a-zA-Z0-9_-]{1,64}$``; Anthropic clients (MCP tools
in Claude Code especially) send longer names. A :class:`ToolNameMap` gives each such
name a valid stand-in that is a pure function of the request's tool list, so the
tool_use turns a client sends back in history map the same way every time, and the
stream translator restores the client's name on the way out.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

MAX_OPENAI_NAME = 64
_VALID = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_INVALID_CHARS = re.compile(r"[^a-zA-Z0-9_-]")


class ToolNameMap:
    """Reversible map between a request's Anthropic tool names and OpenAI names."""

    def __init__(self, names: Iterable[str] = ()) -> None:
        self._to_openai: dict[str, str] = {}
        self._to_anthropic: dict[str, str] = {}
        names = list(names)
        # Valid names first, so a stand-in never displaces a name that needed none.
        for name in sorted(names, key=lambda n: _VALID.fullmatch(n) is None):
            self.to_openai(name)

    def to_openai(self, name: str) -> str:
        """The OpenAI name for ``name`` (itself when already valid), registered both ways."""
        mapped = self._to_openai.get(name)
        if mapped is not None:
            return mapped
        mapped = name if _VALID.fullmatch(name) else _stand_in(name)
        if mapped in self._to_anthropic:  # a stand-in that collides with another name
            mapped = _stand_in(name, always_hash=True)
        self._to_openai[name] = mapped
        self._to_anthropic[mapped] = name
        return mapped

    def to_anthropic(self, name: str) -> str:
        """The client's name for an upstream name; unknown names pass through."""
        return self._to_anthropic.get(name, name)


def _stand_in(name: str, *, always_hash: bool = False) -> str:
    clean = _INVALID_CHARS.sub("_", name) or "tool"
    if len(clean) <= MAX_OPENAI_NAME and not always_hash:
        return clean
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{clean[: MAX_OPENAI_NAME - 9]}_{digest}"
