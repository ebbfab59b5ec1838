"""The ranked queue: a Line-API scroll view that paints only the rows on screen.

The stock DataTable measures every cell on the UI thread (seconds at 50,000 rows); this view
holds just the ordered uids and fetches rows a page at a time from SQLite through an LRU
cache, so first paint and a repaint after a decision cost one page query at most.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.cells import set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from engine.review_queries import QueueRow
from poison_tui.widgets.literal import visible

PAGE = 100
STATUS_STYLE = {
    "undecided": Style(color="grey62"),
    "keep": Style(color="green3", bold=True),
    "quarantine": Style(color="yellow3", bold=True),
    "remove": Style(color="red3", bold=True),
}
HEADER_STYLE = Style(bold=True, underline=True)
CURSOR_STYLE = Style(bgcolor="grey27")
SELECTED_STYLE = Style(color="cyan", bold=True)
# (title, width); the input preview takes whatever width is left
COLUMNS = (("", 1), ("rank", 6), ("id", 10), ("task", 16), ("score", 7), ("flag", 4),
           ("infl orig→trans", 16), ("sent/label", 11), ("status", 10))


def _num(x: float | None, fmt: str = "+.2f") -> str:
    return "—" if x is None else format(x, fmt)


def _cells(row: QueueRow, rank: int, selected: bool) -> list[tuple[str, Style]]:
    label = {1.0: "pos", -1.0: "neg", 0.0: "neu"}.get(row.polarity, "—") if row.polarity is not None else "—"
    clash = row.sentiment is not None and row.polarity is not None and row.sentiment * row.polarity < 0
    flag = ("!" if row.flagged else " ") + (str(row.n_flagging) if row.n_flagging else " ")
    infl = f"{_num(row.infl_original)}→{_num(row.infl_transformed)}"
    flip = (row.infl_original is not None and row.infl_transformed is not None
            and row.infl_original > 0 > row.infl_transformed)
    return [
        ("●" if selected else " ", SELECTED_STYLE),
        (str(rank), Style()),
        (visible(row.source_id or row.uid), Style()),
        (visible(row.task), Style()),
        (_num(row.score, ".3g"), Style()),
        (flag, Style(color="red3", bold=True) if row.flagged else Style()),
        (infl, Style(color="orange3") if flip else Style()),
        (f"{_num(row.sentiment)}/{label}", Style(color="orange3") if clash else Style()),
        (row.status, STATUS_STYLE.get(row.status, Style())),
        (visible(row.preview.replace("\n", "⏎")), Style()),
    ]


class SuspectList(ScrollView, can_focus=True):
    """Rows of the queue; line 0 is a sticky column header."""

    DEFAULT_CSS = """
    SuspectList { height: 1fr; overflow-x: hidden; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("down,j", "move(1)", "Down", id="queue.down", show=False),
        Binding("up,k", "move(-1)", "Up", id="queue.up", show=False),
        Binding("pagedown", "page(1)", "Page down", id="queue.page_down", show=False),
        Binding("pageup", "page(-1)", "Page up", id="queue.page_up", show=False),
        Binding("home,g", "first", "First", id="queue.first", show=False),
        Binding("end,G", "last", "Last", id="queue.last", show=False),
    ]

    cursor: reactive[int] = reactive(0, always_update=True, repaint=False)

    class CursorMoved(Message):
        def __init__(self, uid: str | None) -> None:
            super().__init__()
            self.uid = uid

    def __init__(self, fetch: Callable[[list[str]], dict[str, QueueRow]], **kwargs) -> None:
        super().__init__(**kwargs)
        self._fetch = fetch
        self.uids: list[str] = []
        self.selected: set[str] = set()
        self._pages: LRUCache[int, dict[str, QueueRow]] = LRUCache(64)

    # -- data -----------------------------------------------------------------------------
    def set_uids(self, uids: list[str], keep_uid: str | None = None) -> None:
        """Show a new ordering (a filter or sort change); keep the cursor on ``keep_uid``."""
        self.uids = uids
        self._pages.clear()
        self.virtual_size = Size(self.size.width, len(uids) + 1)
        target = 0
        if keep_uid is not None:
            try:
                target = uids.index(keep_uid)
            except ValueError:
                target = 0
        self.cursor = min(target, max(0, len(uids) - 1))
        self.refresh()

    def invalidate(self, uids: list[str] | None = None) -> None:
        """Re-read rows (all, or just ``uids``: one small query, not their whole page)."""
        if uids is None or len(uids) > PAGE:
            self._pages.clear()
            self.refresh()
            return
        fresh = self._fetch(list(uids))
        for uid in uids:
            try:
                i = self.cursor if uid == self.current_uid else self.uids.index(uid)
            except ValueError:
                continue
            page = self._pages.get(i // PAGE)
            if page is not None and uid in fresh:
                page[uid] = fresh[uid]
            self.refresh_line(self._line_of(i))

    def row_at(self, index: int) -> QueueRow | None:
        if not 0 <= index < len(self.uids):
            return None
        page = index // PAGE
        rows = self._pages.get(page)
        if rows is None:
            rows = self._fetch(self.uids[page * PAGE:(page + 1) * PAGE])
            self._pages[page] = rows
        return rows.get(self.uids[index])

    @property
    def current_uid(self) -> str | None:
        return self.uids[self.cursor] if 0 <= self.cursor < len(self.uids) else None

    # -- cursor ---------------------------------------------------------------------------
    def _line_of(self, index: int) -> int:
        return index + 1 - int(self.scroll_offset.y)

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.uids) - 1))

    def watch_cursor(self, old: int, new: int) -> None:
        visible_rows = max(1, self.size.height - 1)
        top = int(self.scroll_offset.y)
        if new < top:
            self.scroll_to(y=new, animate=False, immediate=True)
        elif new >= top + visible_rows:
            self.scroll_to(y=new - visible_rows + 1, animate=False, immediate=True)
        self.refresh_line(self._line_of(old))
        self.refresh_line(self._line_of(new))
        self.post_message(self.CursorMoved(self.current_uid))

    def move(self, delta: int) -> None:
        self.cursor = self.cursor + delta

    def action_move(self, delta: int) -> None:
        self.move(delta)

    def action_page(self, direction: int) -> None:
        self.move(direction * max(1, self.size.height - 2))

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = len(self.uids) - 1

    def on_click(self, event: events.Click) -> None:
        line = event.y
        if line >= 1:
            self.cursor = int(self.scroll_offset.y) + line - 1

    def on_resize(self, event: events.Resize) -> None:
        self.virtual_size = Size(event.size.width, len(self.uids) + 1)

    # -- painting -------------------------------------------------------------------------
    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return self._layout([(title, HEADER_STYLE) for title, _ in COLUMNS] + [("input", HEADER_STYLE)],
                                width, Style())
        index = int(self.scroll_offset.y) + y - 1
        if not self.uids and y == 1:
            text = "  no examples in this view: f changes the filter, / the search"
            return Strip([Segment(set_cell_size(text, width), self.rich_style + Style(dim=True))])
        row = self.row_at(index)
        if row is None:
            return Strip.blank(width, self.rich_style)
        base = CURSOR_STYLE if index == self.cursor else Style()
        return self._layout(_cells(row, index + 1, row.uid in self.selected), width, base)

    def _layout(self, cells: list[tuple[str, Style]], width: int, base: Style) -> Strip:
        style = self.rich_style + base
        segments, used = [], 0
        for (text, cell_style), (_, w) in zip(cells[:-1], COLUMNS, strict=True):
            segments.append(Segment(set_cell_size(text, w) + " ", style + cell_style))
            used += w + 1
        text, cell_style = cells[-1]  # the input preview fills the rest of the line
        if width > used:
            segments.append(Segment(set_cell_size(text, width - used), style + cell_style))
        return Strip(segments).adjust_cell_length(width, style)
