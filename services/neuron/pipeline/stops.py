"""Stop strings over a stream of text pieces: matched text is cut, possible starts held.

A stop string may span tokens, so text that could be the start of one is held back
until the next piece decides it. Pieces carry an optional marker id; a marker piece
is atomic: released whole or, when a stop string starts inside it, dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


class Piece(NamedTuple):
    text: str
    marker: int | None = None  # the token id when the piece is a routed marker


class StopMatcher:
    def __init__(self, stop_strings: Sequence[str] = ()) -> None:
        self.stop_strings = [s for s in dict.fromkeys(stop_strings) if s]
        self.matched: str | None = None
        self._held: list[Piece] = []

    @property
    def holding(self) -> str:
        """Text held back because it might begin a stop string."""
        return "".join(piece.text for piece in self._held)

    def feed(self, piece: Piece) -> list[Piece]:
        """Add a piece; return the pieces now known not to be part of a stop string."""
        if self.matched is not None:
            return []
        if not self.stop_strings:
            return [piece]
        self._held.append(piece)
        raw = self.holding
        found = self._earliest_match(raw)
        if found is not None:
            start, stop = found
            self.matched = stop
            released = _take(self._held, start, cut_markers=True)[0]
            self._held = []
            return released
        safe = len(raw) - self._longest_partial(raw)
        released, self._held = _take(self._held, safe, cut_markers=False)
        return released

    def flush(self) -> list[Piece]:
        """Release what is held (the stream ended without completing a stop string)."""
        if self.matched is not None:
            return []
        released, self._held = self._held, []
        return released

    def _earliest_match(self, raw: str) -> tuple[int, str] | None:
        best: tuple[int, str] | None = None
        for stop in self.stop_strings:
            index = raw.find(stop)
            if index >= 0 and (best is None or index < best[0]):
                best = (index, stop)
        return best

    def _longest_partial(self, raw: str) -> int:
        """Length of the longest suffix of ``raw`` that is a proper prefix of a stop."""
        longest = 0
        for stop in self.stop_strings:
            for size in range(min(len(stop) - 1, len(raw)), longest, -1):
                if raw.endswith(stop[:size]):
                    longest = size
                    break
        return longest


def _take(pieces: list[Piece], limit: int, *, cut_markers: bool) -> tuple[list[Piece], list[Piece]]:
    """Split ``pieces`` at character ``limit``: (before, after).

    A text piece straddling the limit is split; a marker piece straddling it goes to
    ``after`` with everything behind it (or is dropped with them when ``cut_markers``).
    """
    before: list[Piece] = []
    position = 0
    for index, piece in enumerate(pieces):
        end = position + len(piece.text)
        if end <= limit:
            before.append(piece)
            position = end
            continue
        if piece.marker is None and limit > position:
            head = piece.text[: limit - position]
            before.append(Piece(head))
            rest = [Piece(piece.text[limit - position :]), *pieces[index + 1 :]]
        else:
            rest = pieces[index:]
        return before, ([] if cut_markers else rest)
    return before, []
