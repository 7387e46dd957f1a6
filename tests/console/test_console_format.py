"""Formatting and thresholds: what the tables and the header print."""

from __future__ import annotations

import pytest

from cortex.console import format as fmt
from cortex.console.format import Thresholds


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "ok"),
        (0, "ok"),
        (74.9, "ok"),
        (75, "warn"),
        (89.9, "warn"),
        (90, "crit"),
        (100, "crit"),
    ],
)
def test_level_boundaries(value, expected):
    assert fmt.level(value, Thresholds(75, 90)) == expected


def test_thresholds_parse_and_reject():
    assert Thresholds.parse("60,80") == Thresholds(60, 80)
    with pytest.raises(ValueError, match="WARN,CRIT"):
        Thresholds.parse("high")
    with pytest.raises(ValueError, match="warn <= crit"):
        Thresholds.parse("90,60")


@pytest.mark.parametrize(
    ("n", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1536, "1.50 KiB"),
        (310 * 1024**2, "310 MiB"),
        (int(6.2 * 1024**3), "6.20 GiB"),
        (int(23.4 * 1024**3), "23.4 GiB"),
        (3 * 1024**4, "3.00 TiB"),
    ],
)
def test_human_bytes(n, text):
    assert fmt.human_bytes(n) == text


def test_memory_pair_uses_the_unit_of_the_total():
    assert fmt.memory_pair(int(10.5 * 1024**3), 24 * 1024**3) == "10.5/24.0 GiB"
    assert fmt.memory_pair(300 * 1024**2, 80 * 1024**3) == "0.29/80.0 GiB"
    assert fmt.memory_pair(5, 0) == "5 B"


def test_rates_and_durations():
    assert fmt.rate(0) == "0" and fmt.rate(12.34) == "12.3" and fmt.rate(140.6) == "141"
    assert fmt.millis(None) == "-" and fmt.millis(45.2) == "45 ms" and fmt.millis(1234) == "1.2 s"
    assert fmt.duration(5) == "5s" and fmt.duration(185) == "3m05s"
    assert fmt.duration(7620) == "2h07m" and fmt.duration(3 * 86400 + 4 * 3600) == "3d04h"


def test_bars_fill_in_eighths():
    assert fmt.bar_fill(0, 4) == ""
    assert fmt.bar_fill(1, 4) == "████"
    assert fmt.bar_fill(0.5, 4) == "██"
    assert fmt.bar_fill(1 / 32, 4) == "▏"
    assert fmt.bar_fill(2.0, 3) == "███", "clamped"


def test_sparkline_scales_and_pads():
    assert fmt.sparkline([], 4) == "    "
    assert fmt.sparkline([0, 10], 4) == "  ▁█"
    assert fmt.sparkline([0.05, 0.06], 2) == "▁▁", "a quiet series stays low (floor of 1)"
    assert fmt.sparkline([1, 2, 3, 4, 5], 3) == "▅▇█", "only the last width values"
    assert fmt.sparkline([50], 1, ceiling=100) == "▅"
