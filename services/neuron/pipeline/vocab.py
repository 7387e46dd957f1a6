"""The bytes each token stands for, computed once per tokenizer.

Constrained decoding checks tokens against a byte-level grammar, so it needs every
token's raw bytes, including tokens that hold only part of a UTF-8 character. They
come from the tokenizer's decoder: byte-level BPE (GPT-2, Llama 3, Qwen) maps each
byte to a printable character; SentencePiece-style tokenizers (Llama 2, Mistral) spell
bytes as ``<0xNN>`` and spaces as ``▁``. Anything else is decoded token by token.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any

_BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
_METASPACE = "\u2581"


@lru_cache(maxsize=1)
def _byte_level_decoding() -> dict[str, int]:
    """GPT-2's byte <-> printable character table, reversed (character -> byte)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAC + 1), *range(0xAE, 0xFF + 1)]
    chars = list(printable)
    shift = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + shift)
            shift += 1
    return {chr(char): byte for byte, char in zip(printable, chars, strict=True)}


class TokenVocab:
    """Per-token bytes, which tokens may be chosen freely, and a bytes -> id lookup.

    Added tokens (markers such as ``<tool_call>``, control tokens) are never free: a
    constraint emits them only where it forces their text.
    """

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self.size = tokenizer.get_vocab_size(with_added_tokens=True)
        spec = json.loads(tokenizer.to_str())
        added = {entry["id"]: entry["content"] for entry in spec.get("added_tokens", [])}
        decode = _token_decoder(spec.get("decoder"), tokenizer)
        self.token_bytes: list[bytes | None] = [None] * self.size
        self.free: list[bool] = [False] * self.size
        for token_id in range(self.size):
            if token_id in added:
                self.token_bytes[token_id] = added[token_id].encode()
                continue
            piece = tokenizer.id_to_token(token_id)
            data = decode(token_id, piece) if piece is not None else None
            if data:
                self.token_bytes[token_id] = data
                self.free[token_id] = True
        self.by_first_byte: list[list[int]] = [[] for _ in range(256)]
        for token_id, data in enumerate(self.token_bytes):
            if data and self.free[token_id]:
                self.by_first_byte[data[0]].append(token_id)
        self._by_bytes: dict[bytes, int] = {}
        # Prefer added tokens (markers) for their exact text, then the lowest id.
        for token_id, data in enumerate(self.token_bytes):
            if data is not None and (token_id in added or data not in self._by_bytes):
                self._by_bytes[data] = token_id
        self._longest = max((len(data) for data in self._by_bytes), default=1)
        self._plain: tuple[Any, list[int]] | None = None
        self.plain_text()  # built now, so no generation step pays for it

    def plain_text(self) -> tuple[Any, list[int]]:
        """(characters per token as a numpy array, -1 where not plain; the free tokens
        that are not plain). Plain: whole UTF-8 characters, no quote, backslash or
        control character, i.e. text that can sit anywhere inside a JSON string."""
        if self._plain is None:
            import numpy as np

            chars = np.full(self.size, -1, dtype=np.int32)
            other: list[int] = []
            for token_id, data in enumerate(self.token_bytes):
                if not data or not self.free[token_id]:
                    continue
                count = _plain_chars(data)
                if count is None:
                    other.append(token_id)
                else:
                    chars[token_id] = count
            self._plain = (chars, other)
        return self._plain

    def encode_exact(self, text: str) -> list[int] | None:
        """Token ids whose bytes spell exactly ``text``: the tokenizer's own encoding when
        it round-trips, else a greedy longest match over the vocabulary."""
        target = text.encode()
        ids = self.tokenizer.encode(text, add_special_tokens=False).ids
        if b"".join(self.token_bytes[i] or b"\0" for i in ids if i < self.size) == target and all(
            i < self.size for i in ids
        ):
            return ids
        return self._greedy(target)

    def _greedy(self, target: bytes) -> list[int] | None:
        ids: list[int] = []
        position = 0
        while position < len(target):
            for size in range(min(self._longest, len(target) - position), 0, -1):
                token_id = self._by_bytes.get(target[position : position + size])
                if token_id is not None:
                    ids.append(token_id)
                    position += size
                    break
            else:
                return None
        return ids


def _plain_chars(data: bytes) -> int | None:
    if b'"' in data or b"\\" in data or any(byte < 0x20 for byte in data):
        return None
    try:
        return len(data.decode())
    except UnicodeDecodeError:
        return None


def _token_decoder(decoder: dict | None, tokenizer: Any):
    kinds = _decoder_kinds(decoder)
    if "ByteLevel" in kinds:
        table = _byte_level_decoding()

        def byte_level(_: int, piece: str) -> bytes | None:
            try:
                return bytes(table[char] for char in piece)
            except KeyError:
                return piece.encode()

        return byte_level
    if "ByteFallback" in kinds or "Metaspace" in kinds:

        def sentencepiece(_: int, piece: str) -> bytes | None:
            match = _BYTE_FALLBACK.match(piece)
            if match:
                return bytes([int(match.group(1), 16)])
            return piece.replace(_METASPACE, " ").encode()

        return sentencepiece

    def generic(token_id: int, _: str) -> bytes | None:
        text = tokenizer.decode([token_id], skip_special_tokens=False)
        return None if "\ufffd" in text else text.encode()

    return generic


def _decoder_kinds(decoder: dict | None) -> set[str]:
    if not decoder:
        return set()
    kinds = {decoder.get("type", "")}
    for inner in decoder.get("decoders") or []:
        kinds |= _decoder_kinds(inner)
    return kinds


_VOCABS: dict[int, tuple[Any, TokenVocab]] = {}


def vocab_for(tokenizer: Any) -> TokenVocab:
    """The ``TokenVocab`` of ``tokenizer``, built on first use and kept (one per model)."""
    entry = _VOCABS.get(id(tokenizer))
    if entry is None or entry[0] is not tokenizer:
        entry = (tokenizer, TokenVocab(tokenizer))
        _VOCABS[id(tokenizer)] = entry
    return entry[1]
