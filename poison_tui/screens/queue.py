"""The main screen: ranked suspects on top, the detail of the one under the cursor below.

Decisions go through ``engine.decisions`` and are committed before the row repaints with its
new status; a single decision runs on the UI thread (a few ms) so nothing can reorder it, a
bulk one in a worker whose completion message updates the view.
"""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from functools import partial
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Static

from engine import decisions
from engine.errors import UserError
from engine.review_queries import SORTS, STATUSES, QueueFilter, ReviewQueries
from poison_tui.messages import BulkApplied, IndexLoaded
from poison_tui.screens.confirm import BulkConfirm
from poison_tui.screens.detail import DetailScreen
from poison_tui.screens.filter import FilterModal, SearchModal
from poison_tui.screens.reason import Reason, ReasonModal
from poison_tui.widgets.detail_view import DetailView
from poison_tui.widgets.literal import visible
from poison_tui.widgets.suspect_list import PAGE, STATUS_STYLE, SuspectList

if TYPE_CHECKING:
    from poison_tui.app import ReviewApp

FIRST_PAINT_ROWS = 2 * PAGE
DETAIL_DELAY_S = 0.06


class QueueScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a,1", "decide('keep')", "Keep", id="review.keep"),
        Binding("q,2", "decide('quarantine')", "Quarantine", id="review.quarantine"),
        Binding("x,3", "decide('remove')", "Remove", id="review.remove"),
        Binding("full_stop", "repeat", "Repeat last", id="review.repeat"),
        Binding("u", "undo", "Undo", id="review.undo"),
        Binding("space", "toggle_select", "Select", id="review.select"),
        Binding("V", "select_filter", "Select all in view", id="review.select_view", show=False),
        Binding("escape", "clear_selection", "Clear selection", id="review.clear_selection", show=False),
        Binding("f", "filter", "Filter", id="review.filter"),
        Binding("slash", "search", "Search", id="review.search"),
        Binding("s", "sort", "Sort", id="review.sort"),
        Binding("enter,o", "open_detail", "Detail", id="review.detail"),
        Binding("c", "compute", "Compute", id="review.compute", show=False),
        Binding("e", "export", "Export", id="review.export", show=False),
        Binding("S", "signoff", "Sign off", id="review.signoff", show=False),
        Binding("question_mark", "help", "Help", id="review.help"),
    ]

    DEFAULT_CSS = """
    QueueScreen #header { height: 1; background: $boost; }
    QueueScreen #notice { height: auto; color: $warning; display: none; }
    QueueScreen #notice.shown { display: block; }
    QueueScreen SuspectList { height: 3fr; }
    QueueScreen DetailView { height: 2fr; }
    """

    def __init__(self, queries: ReviewQueries) -> None:
        super().__init__()
        self.queries = queries
        self.filter = QueueFilter()
        self.sort = "rank"
        self.select_all = False
        self.last: tuple[str, str | None] | None = None  # (action, reason) for "repeat last"
        self.bulk_running = False
        self._bulk_last: tuple[str, str | None] | None = None
        self.view_count = 0  # rows in the view (known before the index has loaded)
        self._detail_timer: Timer | None = None

    @property
    def review_app(self) -> ReviewApp:
        return self.app  # type: ignore[return-value]

    @property
    def table(self) -> SuspectList:
        return self.query_one(SuspectList)

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield Static(id="notice")
        yield SuspectList(self.queries.rows, id="queue")
        yield DetailView(id="detail")
        yield Footer()

    def on_mount(self) -> None:
        # paint the head of the ranking now; the full index loads behind it
        uids, self.view_count = self.queries.first_uids(FIRST_PAINT_ROWS)
        self.table.set_uids(uids)
        self.table.focus()
        self.refresh_header()
        self.refresh_notice()
        self._load_index()

    @work(thread=True, exclusive=True, group="index", exit_on_error=False)
    def _load_index(self) -> None:
        try:
            self.queries.load_index()
        finally:
            self.queries.ws.close()
        self.post_message(IndexLoaded())

    @on(IndexLoaded)
    def _index_loaded(self) -> None:
        self.queries.reload_statuses()  # decisions made while it loaded
        self.apply_view()

    # -- view -----------------------------------------------------------------------------
    def apply_view(self, flt: QueueFilter | None = None, sort: str | None = None) -> None:
        self.filter = flt if flt is not None else self.filter
        self.sort = sort or self.sort
        # a selection is made in a view: carrying hidden rows into the next one would make a
        # bulk action touch examples the analyst cannot see
        self.select_all = False
        self.table.selected.clear()
        self.table.set_uids(self.queries.ordered_uids(self.filter, self.sort), keep_uid=self.table.current_uid)
        self.view_count = len(self.table.uids)
        self.refresh_header()

    def refresh_header(self) -> None:
        counts = self.queries.status_counts()
        t = Text()
        t.append(f" {visible(self.review_app.ws.path.name)} ", style="bold reverse")
        t.append(f"  by {visible(self.queries.detector or 'ingestion order')}  ", style="dim")
        for status in STATUSES:
            t.append(f"{status} ", style="dim")
            t.append(f"{counts[status]:,}  ", style=STATUS_STYLE[status])
        t.append(f"│ view {self.view_count:,} [{visible(self.filter.describe())}] sort {self.sort}",
                 style="dim")
        n_sel = len(self.table.uids) if self.select_all else len(self.table.selected)
        if n_sel:
            t.append(f"  selected {n_sel:,}{' (whole view)' if self.select_all else ''}", style="bold cyan")
        if self.bulk_running:
            t.append("  writing bulk decision…", style="bold yellow")
        self.query_one("#header", Static).update(t)

    def refresh_notice(self) -> None:
        state = self.queries.state
        lines = [state.notice] if state.notice else []
        lines += [f"scores are stale: {r} (press c to recompute)" for r in state.stale[:3]]
        notice = self.query_one("#notice", Static)
        notice.update(Text(visible("\n".join(lines), keep_newlines=True).replace("⏎", "")))
        notice.set_class(bool(lines), "shown")

    @on(SuspectList.CursorMoved)
    def _cursor_moved(self, message: SuspectList.CursorMoved) -> None:
        # The detail pane follows after a short pause: the moved/decided row repaints in this
        # frame, and holding j does not lay out a detail per row passed.
        if self._detail_timer is not None:
            self._detail_timer.stop()
        self._detail_timer = self.set_timer(DETAIL_DELAY_S, partial(self.show_detail, message.uid))

    def show_detail(self, uid: str | None) -> None:
        self._detail_timer = None
        self.query_one(DetailView).show(self.queries.detail(uid) if uid else None)

    # -- decisions ------------------------------------------------------------------------
    def _targets(self) -> tuple[list[str], str]:
        table = self.table
        if self.select_all:
            return list(table.uids), f"every example in the view ({self.filter.describe()}, sort {self.sort})"
        if table.selected:
            return [u for u in table.uids if u in table.selected], "the selected examples"
        uid = table.current_uid
        return ([uid], "row") if uid else ([], "")

    def action_decide(self, action: str) -> None:
        if self.bulk_running:
            self.notify("a bulk decision is still being written", severity="warning", markup=False)
            return
        uids, scope = self._targets()
        if not uids:
            return
        if action == "keep":
            self._decide(uids, action, None, None, scope)
            return
        last_reason = self.last[1] if self.last else None

        def chosen(reason: Reason | None) -> None:
            if reason is not None:
                self._decide(uids, action, reason.code, reason.note, scope)

        self.app.push_screen(ReasonModal(action, len(uids), last_reason), chosen)

    def action_repeat(self) -> None:
        if self.last is None:
            self.notify("no decision to repeat yet", markup=False)
            return
        if self.bulk_running:
            return
        uids, scope = self._targets()
        if uids:
            self._decide(uids, self.last[0], self.last[1], None, scope)

    def _decide(self, uids: list[str], action: str, reason: str | None, note: str | None, scope: str) -> None:
        if scope == "row":
            self._commit(uids, action, reason, note)
            return

        def confirmed(yes: bool | None) -> None:
            if yes:
                self._bulk_last = (action, reason)
                self.bulk_running = True
                self.refresh_header()
                self._bulk(uids, action, reason, note)

        self.app.push_screen(BulkConfirm(action, len(uids), scope, reason), confirmed)

    def _commit(self, uids: list[str], action: str, reason: str | None, note: str | None) -> None:
        try:
            decisions.decide(self.review_app.ws, uids, action, reason=reason, note=note,
                             actor=self.review_app.actor)
        except (UserError, sqlite3.Error) as exc:  # e.g. the disk is full: say so, show nothing as done
            self.notify(str(exc), title="not recorded", severity="error", markup=False)
            return
        # committed (durable) from here on: only now does the row show the new status
        self.last = (action, reason)
        self.queries.reload_statuses(uids)
        self.table.invalidate(uids)
        self.refresh_header()
        self.table.move(1)

    @work(thread=True, exclusive=True, group="decide", exit_on_error=False)
    def _bulk(self, uids: list[str], action: str, reason: str | None, note: str | None) -> None:
        ws = self.review_app.ws
        try:
            decisions.decide(ws, uids, action, reason=reason, note=note, actor=self.review_app.actor, bulk=True)
        except Exception as exc:  # nothing was written (one transaction); say why
            self.post_message(BulkApplied(uids, action, str(exc)))
        else:
            self.post_message(BulkApplied(uids, action))
        finally:
            ws.close()

    @on(BulkApplied)
    def _bulk_applied(self, message: BulkApplied) -> None:
        self.bulk_running = False
        if message.error:
            self.notify(message.error, title="bulk decision not recorded", severity="error", markup=False)
        else:
            self.last = self._bulk_last
            self.queries.reload_statuses()
            self.table.selected.clear()
            self.select_all = False
            self.table.invalidate()
            self.notify(f"{message.action}: {len(message.uids):,} examples recorded", markup=False)
        self.refresh_header()

    def action_undo(self) -> None:
        if self.bulk_running:
            return
        try:
            seqs = decisions.undo(self.review_app.ws, self.review_app.actor)
        except (UserError, sqlite3.Error) as exc:
            self.notify(str(exc), title="undo failed", severity="error", markup=False)
            return
        if not seqs:
            self.notify("nothing to undo", markup=False)
            return
        self.queries.reload_statuses()
        self.table.invalidate()
        self.refresh_header()
        self.show_detail(self.table.current_uid)
        self.notify(f"undone: {len(seqs)} decision(s) reverted (history keeps both)", markup=False)

    # -- selection ------------------------------------------------------------------------
    def action_toggle_select(self) -> None:
        uid = self.table.current_uid
        if uid is None:
            return
        self.select_all = False
        self.table.selected ^= {uid}
        self.table.invalidate([uid])
        self.table.move(1)
        self.refresh_header()

    def action_select_filter(self) -> None:
        if not self.queries.index_loaded:
            self.apply_view()  # the whole view, not just the first page painted so far
        self.select_all = not self.select_all
        self.table.selected.clear()
        self.table.invalidate()
        self.refresh_header()

    def action_clear_selection(self) -> None:
        if self.select_all or self.table.selected:
            self.select_all = False
            self.table.selected.clear()
            self.table.invalidate()
            self.refresh_header()

    # -- view commands --------------------------------------------------------------------
    def action_filter(self) -> None:
        def chosen(flt: QueueFilter | None) -> None:
            if flt is not None:
                self.apply_view(flt)

        self.app.push_screen(FilterModal(self.filter, self.queries.tasks()), chosen)

    def action_search(self) -> None:
        def chosen(flt: QueueFilter | None) -> None:
            if flt is not None:
                self.apply_view(flt)

        self.app.push_screen(SearchModal(self.filter), chosen)

    def action_sort(self) -> None:
        self.apply_view(sort=SORTS[(SORTS.index(self.sort) + 1) % len(SORTS)])

    def set_status_filter(self, status: str | None) -> None:
        self.apply_view(replace(self.filter, statuses=(status,) if status else ()))

    def action_open_detail(self) -> None:
        uid = self.table.current_uid
        detail = self.queries.detail(uid) if uid else None
        if detail is not None:
            self.app.push_screen(DetailScreen(detail))

    def action_compute(self) -> None:
        self.review_app.open_compute()

    def action_export(self) -> None:
        self.review_app.open_export()

    def action_signoff(self) -> None:
        self.review_app.open_signoff()

    def action_help(self) -> None:
        self.review_app.open_help()

    def scores_changed(self) -> None:
        """After a compute: new ranking, new notice."""
        self.queries.reload_state()
        self.queries.load_index()
        self.refresh_notice()
        self.apply_view()
