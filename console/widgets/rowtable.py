"""A keyed, row-cursor table that repaints only the rows that changed.

Why not Textual's DataTable: any ``update_cell`` there invalidates its whole render cache
(keyed on a table-wide update counter) and repaints every visible row through Rich's
layout engine; with a fleet where every row changes each second, that cost most of a
core's 10 %. Here each row is one line drawn through the Line API: a change marks its
row stale and repaints that line only, a row is rebuilt only when it is shown (rows off
screen catch up when they scroll into view), and only the cells whose content changed
are converted to segments again.

The table does not own data: :meth:`RowTable.sync` gives it the row keys in order and a
function that builds a row's cells from the app's state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import ClassVar

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.geometry import Region, Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Cell = Text | str
Cells = tuple[Cell, ...]
Column = tuple[str, str, int]  # key, label, width (in cells, without the padding)
PAD = 1  # blank cells either side of a column


def _as_text(cell: Cell) -> Text:
    return cell if isinstance(cell, Text) else Text(cell)


class RowTable(ScrollView, can_focus=True):
    """Rows keyed by strings, one line each, with a header line and a row cursor."""

    COLUMNS: ClassVar[Sequence[Column]] = ()
    COMPONENT_CLASSES: ClassVar[set[str]] = {"rowtable--header", "rowtable--cursor"}
    BINDINGS = [
        Binding("enter", "select_cursor", "Details"),
        Binding("up", "cursor_up", "Up", show=False),
        Binding("down", "cursor_down", "Down", show=False),
        Binding("pageup", "page_up", "Page up", show=False),
        Binding("pagedown", "page_down", "Page down", show=False),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]
    DEFAULT_CSS = """
    RowTable {
        background: $surface;
        color: $foreground;
        & > .rowtable--header {
            text-style: bold;
            background: $panel;
            color: $foreground;
        }
        & > .rowtable--cursor {
            background: $block-cursor-blurred-background;
            color: $block-cursor-blurred-foreground;
            text-style: $block-cursor-blurred-text-style;
        }
        &:focus {
            background-tint: $foreground 5%;
            & > .rowtable--cursor {
                background: $block-cursor-background;
                color: $block-cursor-foreground;
                text-style: $block-cursor-text-style;
            }
        }
    }
    """

    class _RowMessage(Message):
        def __init__(self, table: RowTable, key: str | None) -> None:
            super().__init__()
            self.table = table
            self.key = key

        @property
        def control(self) -> RowTable:
            return self.table

    class Highlighted(_RowMessage):
        """The cursor moved to another row (``key`` None: the table is empty)."""

    class Selected(_RowMessage):
        """Enter (or a click on the cursor row) on the row ``key``."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._order: list[str] = []
        self._index: dict[str, int] = {}
        self._build: Callable[[str], Cells] | None = None
        self._content: dict[str, Cells] = {}
        self._pieces: dict[str, list[list[Segment]]] = {}  # per row, per column
        self._lines: dict[str, tuple[Style, Strip]] = {}  # drawn rows, with the base style
        self._stale: set[str] = set()
        self._cursor = 0
        self._cursor_key: str | None = None
        self._header: tuple[Style, Strip] | None = None
        self._base = Style()
        self._width = sum(width + 2 * PAD for _, _, width in self.COLUMNS)
        self.rows_built = 0  # how many times a row's cells were computed (tests, benchmark)

    # ------------------------------------------------------------------ reading

    @property
    def row_keys(self) -> list[str]:
        return list(self._order)

    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def stale_rows(self) -> int:
        """Rows whose content changed but are not drawn yet (off screen)."""
        return len(self._stale)

    def is_stale(self, key: str) -> bool:
        """Whether the row's content changed (or was never built) and is not drawn yet."""
        return key in self._stale or key not in self._content

    @property
    def cursor_row(self) -> int:
        return self._cursor

    @property
    def selected_key(self) -> str | None:
        return self._order[self._cursor] if self._order else None

    def get_cell(self, key: str, column: str) -> Text:
        """The cell as it is (or would be) drawn; raises KeyError for an unknown key."""
        if key not in self._index:
            raise KeyError(key)
        cells = self._current(key)
        position = next(i for i, (name, _, _) in enumerate(self.COLUMNS) if name == column)
        return _as_text(cells[position])

    # ------------------------------------------------------------------ writing

    def sync(
        self, order: list[str], build: Callable[[str], Cells], dirty: Iterable[str] | None
    ) -> None:
        """Show rows ``order``; ``dirty`` keys (None: all of them) have new content.

        Dirty rows on screen are rebuilt now and repainted only if their cells differ;
        the others are marked stale and rebuilt when they are drawn.
        """
        self._build = build
        if order != self._order:
            self._set_order(order)
        if dirty is None:
            self._stale.update(self._order)
            self._lines.clear()
            self.refresh()
            return
        dirty = set(dirty)
        top, bottom = self._visible_rows()
        width = max(self.virtual_size.width, self.size.width)
        regions: list[Region] = []
        for index, key in enumerate(self._order[top:bottom], start=top):
            if key in dirty and self._rebuild(key):
                regions.append(Region(0, index + 1 - top, width, 1))
        dirty.difference_update(self._order[top:bottom])
        self._stale.update(dirty.intersection(self._index))
        if regions:
            self.refresh(*regions)

    def _set_order(self, order: list[str]) -> None:
        previous = self._cursor_key
        self._order = list(order)
        self._index = {key: i for i, key in enumerate(order)}
        for store in (self._content, self._pieces, self._lines):
            for key in [k for k in store if k not in self._index]:
                del store[key]
        self._stale.intersection_update(self._index)
        self._stale.update(k for k in order if k not in self._content)
        self.virtual_size = Size(self._width, len(order) + 1)
        if previous in self._index:
            self._cursor = self._index[previous]
        else:
            self._cursor = min(self._cursor, max(0, len(order) - 1))
        self._note_cursor()
        self.refresh()

    def move_cursor(self, *, row: int, animate: bool = False) -> None:
        if not self._order:
            return
        row = max(0, min(row, len(self._order) - 1))
        if row != self._cursor:
            old = self._cursor
            self._cursor = row
            self.refresh_line(old + 1)
            self.refresh_line(row + 1)
        self._scroll_to_cursor(animate)
        self._note_cursor()

    def _note_cursor(self) -> None:
        key = self.selected_key
        if key != self._cursor_key:
            self._cursor_key = key
            self.post_message(self.Highlighted(self, key))

    def _scroll_to_cursor(self, animate: bool) -> None:
        rows = self._page()
        top = round(self.scroll_y)
        if self._cursor < top:
            self.scroll_to(y=self._cursor, animate=animate, immediate=True)
        elif self._cursor >= top + rows:
            self.scroll_to(y=self._cursor - rows + 1, animate=animate, immediate=True)

    # ------------------------------------------------------------------ keys and mouse

    def _page(self) -> int:
        return max(1, self.scrollable_content_region.height - 1)

    def action_cursor_up(self) -> None:
        self.move_cursor(row=self._cursor - 1)

    def action_cursor_down(self) -> None:
        self.move_cursor(row=self._cursor + 1)

    def action_page_up(self) -> None:
        self.move_cursor(row=self._cursor - self._page())

    def action_page_down(self) -> None:
        self.move_cursor(row=self._cursor + self._page())

    def action_first(self) -> None:
        self.move_cursor(row=0)

    def action_last(self) -> None:
        self.move_cursor(row=len(self._order) - 1)

    def action_select_cursor(self) -> None:
        key = self.selected_key
        if key is not None:
            self.post_message(self.Selected(self, key))

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None or offset.y < 1:
            return
        row = round(self.scroll_y) + offset.y - 1
        if not 0 <= row < len(self._order):
            return
        if row == self._cursor:
            self.action_select_cursor()
        else:
            self.move_cursor(row=row)

    # ------------------------------------------------------------------ drawing

    def _visible_rows(self) -> tuple[int, int]:
        height = self.scrollable_content_region.height
        if height <= 0:
            return (0, 0)
        top = round(self.scroll_y)
        return (top, top + height - 1)

    def _current(self, key: str) -> Cells:
        """The row's cells, computed again first when they are stale."""
        if key in self._stale or key not in self._content:
            self._rebuild(key)
        return self._content[key]

    def _rebuild(self, key: str) -> bool:
        """Compute the row's cells again; True when they changed."""
        self._stale.discard(key)
        assert self._build is not None
        cells = self._build(key)
        self.rows_built += 1
        old = self._content.get(key)
        if cells == old:
            return False
        self._content[key] = cells
        self._redo_pieces(key, old, cells)
        self._lines.pop(key, None)
        return True

    def _redo_pieces(self, key: str, old: Cells | None, new: Cells) -> None:
        pieces = self._pieces.get(key)
        console = self.app.console
        if pieces is None or old is None:
            self._pieces[key] = [
                _segments(cell, width, console)
                for cell, (_, _, width) in zip(new, self.COLUMNS, strict=True)
            ]
            return
        for i, (before, after, (_, _, width)) in enumerate(
            zip(old, new, self.COLUMNS, strict=True)
        ):
            if before != after:
                pieces[i] = _segments(after, width, console)

    def _row_strip(self, key: str, base: Style) -> Strip:
        pad = Segment(" " * PAD, base)
        segments: list[Segment] = []
        for piece in self._pieces[key]:
            segments.append(pad)
            segments.extend(
                Segment(text, base + style if style is not None else base)
                for text, style, _ in piece
            )
            segments.append(pad)
        return Strip(segments, self._width)

    def _header_strip(self, base: Style) -> Strip:
        style = base + self.get_component_rich_style("rowtable--header")
        if self._header is None or self._header[0] != style:
            text = "".join(
                " " * PAD + _fit(label, width) + " " * PAD for _, label, width in self.COLUMNS
            )
            self._header = (style, Strip([Segment(text, style)], self._width))
        return self._header[1]

    def render_lines(self, crop: Region) -> list[Strip]:
        self._base = self.rich_style  # once per repaint, not per line: it walks the DOM
        return super().render_lines(crop)

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        scroll_x = round(self.scroll_x)
        base = self._base
        if y == 0:
            strip = self._header_strip(base)
        else:
            index = round(self.scroll_y) + y - 1
            if index >= len(self._order):
                return Strip.blank(width, base)
            key = self._order[index]
            self._current(key)
            if index == self._cursor:
                strip = self._row_strip(
                    key, base + self.get_component_rich_style("rowtable--cursor")
                )
            else:
                drawn = self._lines.get(key)
                if drawn is None or drawn[0] != base:
                    drawn = (base, self._row_strip(key, base))
                    self._lines[key] = drawn
                strip = drawn[1]
        return strip.crop_extend(scroll_x, scroll_x + width, base)


def _fit(text: str, width: int) -> str:
    return text[: width - 1] + "…" if len(text) > width else text.ljust(width)


def _segments(cell: Cell, width: int, console) -> list[Segment]:
    """A cell as segments exactly ``width`` cells wide (cut with an ellipsis if longer)."""
    if isinstance(cell, str) or not cell.spans:
        plain = cell if isinstance(cell, str) else cell.plain
        length = cell_len(plain)
        if length <= width:  # one style for the whole cell: no need for Rich's renderer
            style = None if isinstance(cell, str) else _style(cell.style, console)
            return [Segment(plain + " " * (width - length), style)]
    text = _as_text(cell)
    if text.cell_len > width:
        text = text.copy()
        text.truncate(width, overflow="ellipsis")
    segments = [s for s in text.render(console) if s.text]
    missing = width - text.cell_len
    if missing > 0:
        segments.append(Segment(" " * missing))
    return segments


_parsed: dict[str, Style] = {}


def _style(style: str | Style, console) -> Style | None:
    if isinstance(style, Style):
        return style
    if not style:
        return None
    parsed = _parsed.get(style)
    if parsed is None:
        parsed = _parsed[style] = console.get_style(style)
    return parsed
