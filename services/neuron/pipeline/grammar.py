"""A byte-level grammar for constrained decoding, run as a small pushdown automaton.

A grammar is a tree of nodes: literals, sequences, alternatives, and two leaves that
carry their own state (JSON strings with UTF-8 and escapes, JSON numbers with digit
caps and bounds). A configuration is a stack of frames, a persistent linked tuple
``((node, state), parent)``; ``None`` is the empty stack, meaning the grammar is
complete. Alternatives make the automaton nondeterministic, so the state is a
frozenset of configurations that all consumed the same bytes. Everything is
immutable, hence cheap to branch when testing a token and easy to memoise.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any, cast

Stack = Any  # tuple[tuple[Node, Any], Stack] | None
Configs = frozenset

_DONE = object()  # a leaf consumed its last byte
_QUOTE, _BACKSLASH = 0x22, 0x5C
_DIGITS = frozenset(range(0x30, 0x3A))
_HEX = frozenset(b"0123456789abcdefABCDEF")
_ESCAPES = frozenset(b'"\\/bfnrt')


class Node:
    __slots__ = ()


class Lit(Node):
    __slots__ = ("data",)

    def __init__(self, data: bytes | str) -> None:
        self.data = data.encode() if isinstance(data, str) else data

    def __repr__(self) -> str:
        return f"Lit({self.data!r})"


class Seq(Node):
    __slots__ = ("items",)

    def __init__(self, *items: Node) -> None:
        self.items = items


class Alt(Node):
    __slots__ = ("options",)

    def __init__(self, *options: Node) -> None:
        self.options = options


class Leaf(Node):
    """A node with its own state machine: ``advance`` per byte, ``can_end`` without one."""

    __slots__ = ("_bytes_from",)

    initial: Any = None

    def __init__(self) -> None:
        self._bytes_from: dict[Any, frozenset[int]] = {}

    def advance(self, state: Any, byte: int) -> Any:
        """The next state, ``_DONE`` when this byte completes the leaf, None if illegal."""
        raise NotImplementedError

    def can_end(self, state: Any) -> bool:
        """Whether the leaf may end here without consuming (numbers end this way)."""
        return False

    def bytes_from(self, state: Any) -> frozenset[int]:
        found = self._bytes_from.get(state)
        if found is None:
            found = frozenset(b for b in range(256) if self.advance(state, b) is not None)
            self._bytes_from[state] = found
        return found


# UTF-8 lead byte -> (continuation bytes, range of the first continuation byte).
_UTF8_LEADS: dict[int, tuple[int, int, int]] = {}
for _lead in range(0xC2, 0xE0):
    _UTF8_LEADS[_lead] = (1, 0x80, 0xBF)
for _lead in range(0xE0, 0xF0):
    _UTF8_LEADS[_lead] = (2, 0xA0 if _lead == 0xE0 else 0x80, 0x9F if _lead == 0xED else 0xBF)
for _lead in range(0xF0, 0xF5):
    _UTF8_LEADS[_lead] = (3, 0x90 if _lead == 0xF0 else 0x80, 0x8F if _lead == 0xF4 else 0xBF)


class Str(Leaf):
    """A JSON string, quotes included, of ``min_chars``..``max_chars`` characters.

    Valid UTF-8 only (no overlong forms, no surrogates), no raw control characters,
    escapes as JSON defines them (``\\uXXXX`` outside the surrogate range). States:
    ``(0,)`` before the quote; ``(1, chars, pending, lo, hi)`` in the body, with
    ``pending`` UTF-8 continuation bytes due, the next in ``lo..hi``; ``(2, chars)``
    after a backslash; ``(3, chars, hex_digits, after_d)`` inside ``\\u``.
    """

    __slots__ = ("max_chars", "min_chars")
    initial = (0,)

    def __init__(self, min_chars: int = 0, max_chars: int = 64) -> None:
        super().__init__()
        self.min_chars = min_chars
        self.max_chars = max(max_chars, min_chars)

    def advance(self, state: tuple, byte: int) -> Any:
        phase = state[0]
        if phase == 1:
            _, count, pending, low, high = state
            if pending:
                if not low <= byte <= high:
                    return None
                return (1, count, pending - 1, 0x80, 0xBF) if pending > 1 else (1, count, 0, 0, 0)
            if byte == _QUOTE:
                return _DONE if count >= self.min_chars else None
            if count >= self.max_chars or byte < 0x20:
                return None
            if byte == _BACKSLASH:
                return (2, count)
            if byte < 0x80:
                return (1, count + 1, 0, 0, 0)
            lead = _UTF8_LEADS.get(byte)
            return None if lead is None else (1, count + 1, *lead)
        if phase == 0:
            return (1, 0, 0, 0, 0) if byte == _QUOTE else None
        if phase == 2:
            if byte in _ESCAPES:
                return (1, state[1] + 1, 0, 0, 0)
            return (3, state[1], 0, False) if byte == 0x75 else None  # \u
        _, count, digits, after_d = state
        if byte not in _HEX or (digits == 1 and after_d and byte not in b"01234567"):
            return None  # \uD800-\uDFFF would decode to a lone surrogate
        if digits == 3:
            return (1, count + 1, 0, 0, 0)
        return (3, count, digits + 1, after_d if digits else byte in b"dD")


class Num(Leaf):
    """A JSON number without exponent: ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?``, digits capped.

    ``integer`` forbids the fraction. Bounds are kept exactly: every prefix allowed can
    still be completed to a value within ``low``..``high`` (inclusive, on the grid of
    representable values), so a generation never paints itself into a corner.
    State: ``(negative, integer_digits, fraction_digits or None)``.
    """

    __slots__ = ("frac_digits", "high", "int_digits", "integer", "low", "negative")
    initial = (False, "", None)

    def __init__(
        self,
        *,
        integer: bool,
        low: Fraction | None = None,
        high: Fraction | None = None,
        int_digits: int = 6,
        frac_digits: int = 4,
    ) -> None:
        super().__init__()
        self.integer = integer
        self.frac_digits = 0 if integer else frac_digits
        self.low, self.high = low, high
        self.int_digits = max(int_digits, len(str(_smallest_magnitude(low, high))))
        self.negative = low is None or low < 0

    def advance(self, state: tuple, byte: int) -> Any:
        negative, digits, fraction = state
        if fraction is not None:
            if byte not in _DIGITS or len(fraction) >= self.frac_digits:
                return None
            new = (negative, digits, fraction + chr(byte))
        elif byte in _DIGITS:
            if digits == "0" or len(digits) >= self.int_digits:
                return None
            new = (negative, digits + chr(byte), None)
        elif byte == 0x2D and not negative and not digits and self.negative:
            return (True, "", None)
        elif byte == 0x2E and digits and not self.integer:
            new = (negative, digits, "")
        else:
            return None
        return new if self._reachable(*new) else None

    def can_end(self, state: tuple) -> bool:
        negative, digits, fraction = state
        if not digits or fraction == "":
            return False
        value = Fraction(int(digits)) + (
            Fraction(int(fraction), 10 ** len(fraction)) if fraction else 0
        )
        return self._within(-value if negative else value, -value if negative else value)

    def _reachable(self, negative: bool, digits: str, fraction: str | None) -> bool:
        """Whether some completion of this prefix lies within the bounds."""
        if self.low is None and self.high is None:
            return True
        step = Fraction(1, 10**self.frac_digits)
        magnitude = int(digits)
        if fraction is not None:
            base = magnitude + Fraction(int(fraction or "0"), 10 ** len(fraction))
            spans = [(base, base + Fraction(1, 10 ** len(fraction)) - step)]
        else:
            widest = 1 if digits == "0" else self.int_digits - len(digits)
            spans = [
                (magnitude * 10**extra, (magnitude + 1) * 10**extra - step)
                for extra in range(widest + (0 if digits == "0" else 1))
            ]
        for low, high in spans:
            if negative:
                low, high = -high, -low
            if self._within(low, high):
                return True
        return False

    def _within(self, low: Fraction, high: Fraction) -> bool:
        """Whether [low, high] meets [self.low, self.high]."""
        if self.low is not None and high < self.low:
            return False
        return not (self.high is not None and low > self.high)


def _smallest_magnitude(low: Fraction | None, high: Fraction | None) -> int:
    if low is not None and low > 0:
        return int(low) + 1
    if high is not None and high < 0:
        return int(-high) + 1
    return 0


# ---------------------------------------------------------------------- the automaton


def start(grammar: Node) -> Configs:
    return frozenset(_enter(grammar, None))


def step(configs: Configs, byte: int) -> Configs:
    found: set = set()
    for stack in configs:
        found.update(_step(stack, byte))
    return frozenset(found)


def next_bytes(configs: Configs) -> set[int]:
    found: set[int] = set()
    for stack in configs:
        found |= _next_bytes(stack)
    return found


def string_room(configs: Configs) -> int | None:
    """When every configuration is inside a JSON string body, between characters: the
    most characters any of them may still add. None otherwise.

    There, a token of plain text (whole UTF-8 characters, no quote, backslash or
    control character) is legal exactly when it fits, whatever follows the string,
    which lets the constraint list legal tokens without walking each one.
    """
    room = -1
    for stack in configs:
        if stack is None:
            return None
        node, state = stack[0]
        if type(node) is not Str or state[0] != 1 or state[2]:
            return None
        room = max(room, node.max_chars - state[1])
    return room if room >= 0 else None


def complete(configs: Configs) -> bool:
    """Whether the grammar may end here."""
    return None in configs


def _enter(node: Node, parent: Stack) -> list:
    if isinstance(node, Lit):
        return [((node, 0), parent)] if node.data else _finish(parent)
    if isinstance(node, Seq):
        return _enter(node.items[0], ((node, 0), parent)) if node.items else _finish(parent)
    if isinstance(node, Alt):
        return [stack for option in node.options for stack in _enter(option, parent)]
    return [((node, cast(Leaf, node).initial), parent)]


def _finish(stack: Stack) -> list:
    """The top node completed: continue its parent sequence (or complete the grammar)."""
    if stack is None:
        return [None]
    (node, index), rest = stack
    index += 1
    if index < len(node.items):
        return _enter(node.items[index], ((node, index), rest))
    return _finish(rest)


def _step(stack: Stack, byte: int) -> list:
    if stack is None:
        return []
    (node, state), rest = stack
    if type(node) is Lit:
        if node.data[state] != byte:
            return []
        state += 1
        return _finish(rest) if state == len(node.data) else [((node, state), rest)]
    found: list = []
    following = node.advance(state, byte)
    if following is _DONE:
        found.extend(_finish(rest))
    elif following is not None:
        found.append(((node, following), rest))
    if node.can_end(state):
        for after in _finish(rest):
            found.extend(_step(after, byte))
    return found


def _next_bytes(stack: Stack) -> set[int]:
    if stack is None:
        return set()
    (node, state), rest = stack
    if type(node) is Lit:
        return {node.data[state]}
    found = set(node.bytes_from(state))
    if node.can_end(state):
        for after in _finish(rest):
            found |= _next_bytes(after)
    return found
