"""The scrolling event log: loads, unloads, evictions, neurons up/down, errors."""

from __future__ import annotations

from collections.abc import Iterable

from textual.widgets import RichLog

from cortex.common.fleet import LogEntry
from cortex.console.widgets import cells


class EventLog(RichLog):
    def __init__(self, max_lines: int = 500, **kwargs) -> None:
        super().__init__(max_lines=max_lines, wrap=False, markup=False, auto_scroll=True, **kwargs)
        self.lines_written = 0

    def add(self, entries: Iterable[LogEntry]) -> None:
        for entry in entries:
            self.write(cells.log_line(entry))
            self.lines_written += 1
