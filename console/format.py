"""Plain-text formatting shared by the TUI and the ``--json`` path: sizes, rates, bars.

Nothing here imports Textual or Rich, so the script path can use it too; the TUI wraps
these strings in Rich styles picked by :func:`level`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import msgspec

Level = Literal["ok", "warn", "crit"]

_EIGHTHS = " ▏▎▍▌▋▊▉█"
_SPARKS = "▁▂▃▄▅▆▇█"


class Thresholds(msgspec.Struct, frozen=True):
    """Percent boundaries: below ``warn`` is green, from ``warn`` yellow, from ``crit`` red."""

    warn: float
    crit: float

    def __post_init__(self) -> None:
        if not 0 <= self.warn <= self.crit <= 100:
            raise ValueError(
                f"thresholds must satisfy 0 <= warn <= crit <= 100, got {self.warn},{self.crit}"
            )

    @classmethod
    def parse(cls, text: str) -> Thresholds:
        """``"75,90"`` -> ``Thresholds(75, 90)``; a ValueError says what is expected."""
        parts = text.split(",")
        try:
            warn, crit = (float(p) for p in parts)
        except ValueError:
            raise ValueError(f"{text!r} is not WARN,CRIT in percent, e.g. 75,90") from None
        return cls(warn, crit)


# Memory like k9s (warn 70 / critical 90), nudged up: a loaded GPU is meant to be full-ish.
VRAM_THRESHOLDS = Thresholds(75.0, 90.0)
UTIL_THRESHOLDS = Thresholds(75.0, 90.0)
# Degrees Celsius rather than percent; most GPUs throttle in the high 80s.
TEMP_THRESHOLDS = Thresholds(75.0, 85.0)


def level(value: float | None, thresholds: Thresholds) -> Level:
    if value is None or value < thresholds.warn:
        return "ok"
    if value < thresholds.crit:
        return "warn"
    return "crit"


def percent(used: int | float, total: int | float) -> float:
    return 100.0 * used / total if total > 0 else 0.0


def human_bytes(n: int | float | None) -> str:
    """Binary units with three significant digits: ``512 MiB``, ``1.50 GiB``, ``23.4 GiB``."""
    if n is None:
        return "-"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            break
        value /= 1024
    if unit == "B":
        return f"{int(value)} B"
    if abs(value) >= 100:
        return f"{value:.0f} {unit}"
    if abs(value) >= 10:
        return f"{value:.1f} {unit}"
    return f"{value:.2f} {unit}"


def memory_pair(used: int, total: int) -> str:
    """``3.10/23.4 GiB``: the unit once, taken from the total."""
    if total <= 0:
        return human_bytes(used)
    scale = 1
    unit = "B"
    for candidate in ("KiB", "MiB", "GiB", "TiB"):
        if total < scale * 1024:
            break
        scale *= 1024
        unit = candidate
    return f"{_short(used / scale)}/{_short(total / scale)} {unit}"


def _short(value: float) -> str:
    if value >= 100:
        return f"{value:.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def rate(tokens_per_s: float | None) -> str:
    if not tokens_per_s:
        return "0"
    if tokens_per_s >= 100:
        return f"{tokens_per_s:.0f}"
    return f"{tokens_per_s:.1f}"


def millis(ms: float | None) -> str:
    if ms is None:
        return "-"
    if ms >= 10_000:
        return f"{ms / 1000:.0f} s"
    if ms >= 1000:
        return f"{ms / 1000:.1f} s"
    return f"{ms:.0f} ms"


def duration(seconds: float) -> str:
    """``45s``, ``3m05s``, ``2h07m``, ``3d04h``: for uptimes and "stale for"."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def clock(timestamp: float) -> str:
    """Local wall-clock time of a Unix timestamp, ``HH:MM:SS``."""
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


def bar_fill(fraction: float, width: int) -> str:
    """The filled part of a bar ``width`` cells wide, in eighths of a cell."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    return "█" * full + (_EIGHTHS[part] if part else "")


def sparkline(values: Sequence[float], width: int, ceiling: float | None = None) -> str:
    """The last ``width`` values as block characters, right-aligned.

    Scaled to ``ceiling`` when given, else to the largest value shown (at least 1, so a
    quiet series of 0.1 tok/s does not look like a busy one). Zero draws the lowest bar,
    missing history draws blanks.
    """
    shown = list(values)[-width:]
    if not shown:
        return " " * width
    top = ceiling if ceiling is not None else max(1.0, max(shown))
    steps = len(_SPARKS) - 1
    chars = [_SPARKS[min(steps, max(0, round(steps * v / top)))] for v in shown]
    return "".join(chars).rjust(width)


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


# The client's API, by the gateway route its request came in on.
_DIALECTS = {
    "chat": "openai chat",
    "completions": "openai compl",
    "responses": "openai resp",
    "messages": "anthropic",
}


def dialect(endpoint: str) -> str:
    """``openai chat``, ``anthropic``, ...: how a request's client speaks."""
    return _DIALECTS.get(endpoint, endpoint)


def devices(ids: Sequence[str]) -> str:
    """``cuda:0,1`` for ``["cuda:0", "cuda:1"]``: the kind once when all share it."""
    if not ids:
        return "-"
    kinds = {i.partition(":")[0] for i in ids}
    if len(kinds) == 1 and all(":" in i for i in ids):
        return f"{kinds.pop()}:" + ",".join(i.partition(":")[2] for i in ids)
    return ",".join(ids)


def names(items: Sequence[str], width: int) -> str:
    """As many names as fit in ``width``, then ``+N`` for the rest: ``alpha,beta +3``."""
    if not items:
        return "-"
    shown: list[str] = []
    for i, name in enumerate(items):
        rest = len(items) - i - 1
        candidate = ",".join([*shown, name]) + (f" +{rest}" if rest else "")
        if len(candidate) > width and shown:
            return ",".join(shown) + f" +{len(items) - i}"
        shown.append(name)
    return ",".join(shown)


def ratio(part: int, whole: int) -> str:
    """``42%`` of ``whole``; ``-`` when there is nothing to divide."""
    return f"{100 * part / whole:.0f}%" if whole > 0 else "-"
