"""The review app: walk the ranked suspects and decide keep / quarantine / remove.

``run_review(path)`` is the entry point (``poison-tui review`` and ``poison-tui demo``). The app
holds a lock on the workspace for its lifetime, so two reviewers cannot interleave decisions.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.command import DiscoveryHit, Hit, Hits, Provider
from textual.markup import escape

from engine.decisions import default_actor
from engine.review_queries import SORTS, STATUSES, QueueFilter, ReviewQueries
from engine.workspace import Workspace
from poison_tui.lock import WorkspaceLock
from poison_tui.screens.compute import ComputeJob, ComputeScreen, engine_job
from poison_tui.screens.help import CHECKLIST, HelpScreen
from poison_tui.screens.queue import QueueScreen
from poison_tui.widgets.literal import visible


class ReviewCommands(Provider):
    """Command palette entries: filters, sorts and the app's screens (Posting-style)."""

    def _commands(self) -> Iterator[tuple[str, str, Callable[[], None]]]:
        app: ReviewApp = self.app  # type: ignore[assignment]
        queue = app.queue
        if queue is None:
            return
        for status in STATUSES:
            yield f"Filter: {status} only", f"show only {status} examples", partial(queue.set_status_filter, status)
        yield "Filter: any status", "drop the status filter", partial(queue.set_status_filter, None)
        yield ("Filter: flagged only", "only examples the ranking detector flags",
               lambda: queue.apply_view(replace(queue.filter, flagged_only=True)))
        yield "Filter: clear all", "every example, no search", lambda: queue.apply_view(QueueFilter())
        for task in queue.queries.tasks():
            yield (f"Filter: task {visible(task)}", "only this task",
                   partial(lambda t: queue.apply_view(replace(queue.filter, task=t)), task))
        for sort in SORTS:
            yield f"Sort by {sort}", f"order the queue by {sort}", partial(queue.apply_view, None, sort)
        yield "Undo last decision", "appends a revert to the audit log", queue.action_undo
        yield "Compute scores", "run sentiment, influence and detectors", app.open_compute
        yield "Export cleaned dataset", "write the cleaned data, excluded records, manifest", app.open_export
        yield "Sign off export", "sign the export and the audit head", app.open_signoff
        yield "Help and keys", "bindings, their ids, the operator's checklist", app.open_help

    # Titles carry task names from the data: the palette parses strings as markup, so escape.
    async def discover(self) -> Hits:
        for title, help_text, callback in self._commands():
            yield DiscoveryHit(escape(title), callback, text=title, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, help_text, callback in self._commands():
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(escape(title)), callback, text=title, help=help_text)


class ReviewApp(App[int]):
    TITLE = "poison-tui review"
    CSS_PATH = "app.tcss"
    COMMANDS = App.COMMANDS | {ReviewCommands}
    BINDINGS: ClassVar[list[BindingType]] = [Binding("ctrl+q", "quit", "Quit", id="app.quit", priority=True)]

    def __init__(
        self,
        workspace: Path | Workspace,
        actor: str | None = None,
        keymap: dict[str, str] | None = None,
        compute_job: ComputeJob = engine_job,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.ws = workspace if isinstance(workspace, Workspace) else Workspace.open(Path(workspace))
        self.actor = actor or default_actor()
        self.compute_job = compute_job
        self.clock = clock  # the compute screen's ETA reads it: tests pin it
        self.theme = "textual-dark"
        if keymap:
            self.set_keymap(keymap)
        self.queue: QueueScreen | None = None
        self.checklist_path = CHECKLIST

    def on_mount(self) -> None:
        self.queue = QueueScreen(ReviewQueries(self.ws))
        self.push_screen(self.queue)

    # -- screens the queue and the palette open -------------------------------------------
    def open_compute(self) -> None:
        queue = self.queue
        assert queue is not None
        reasons = queue.queries.state.stale or ((queue.queries.state.notice,) if queue.queries.state.notice else ())

        def finished(outcome: str | None) -> None:
            if outcome == "done":
                queue.scores_changed()
                self.notify("scores computed; the queue is re-ranked", markup=False)

        self.push_screen(ComputeScreen(self.ws, self.compute_job, tuple(reasons), self.clock), finished)

    def open_export(self) -> None:
        from poison_tui.screens.export import ExportScreen

        self.push_screen(ExportScreen(self.ws, self.actor))

    def open_signoff(self) -> None:
        from poison_tui.screens.export import SignoffScreen

        self.push_screen(SignoffScreen(self.ws, self.actor))

    def open_help(self) -> None:
        self.push_screen(HelpScreen(self.binding_table(), self.checklist_path))

    def binding_table(self) -> list[tuple[str, str, str]]:
        """(id, keys as mapped now, description) for every binding that has an id."""
        rows = []
        for binding_id, binding in all_bindings().items():
            keys = self._keymap.get(binding_id, binding.key)
            rows.append((binding_id, keys, binding.description or binding.action))
        return rows


def all_bindings() -> dict[str, Binding]:
    """Every binding of the app's screens and widgets, by id (for keymaps and help)."""
    from poison_tui.screens.compute import ComputeScreen
    from poison_tui.screens.confirm import BulkConfirm
    from poison_tui.screens.detail import DetailScreen
    from poison_tui.screens.filter import FilterModal, SearchModal
    from poison_tui.screens.help import HelpScreen
    from poison_tui.screens.reason import ReasonModal
    from poison_tui.widgets.suspect_list import SuspectList

    out: dict[str, Binding] = {}
    for owner in (ReviewApp, QueueScreen, SuspectList, ReasonModal, BulkConfirm, FilterModal, SearchModal,
                  DetailScreen, ComputeScreen, HelpScreen):
        for b in owner.BINDINGS:
            if isinstance(b, Binding) and b.id:
                out.setdefault(b.id, b)
    return out


def queue_keys() -> dict[str, str]:
    """Default keys of the bindings active together on the queue (app, screen, list)."""
    from poison_tui.widgets.suspect_list import SuspectList

    return {b.id: b.key for owner in (ReviewApp, QueueScreen, SuspectList) for b in owner.BINDINGS
            if isinstance(b, Binding) and b.id}


def run_review(workspace_path: Path, keymap_path: Path | None = None, actor: str | None = None) -> int:
    """Open the review app on a workspace; returns the exit status (0)."""
    from poison_tui.keymap import default_keymap_path, load_keymap

    ws = Workspace.open(Path(workspace_path))
    path = keymap_path or default_keymap_path()
    keymap = load_keymap(path, set(all_bindings()), queue_keys()) if keymap_path or path.is_file() else {}
    with WorkspaceLock(ws.path):
        ReviewApp(ws, actor=actor, keymap=keymap).run()
    ws.close()
    return 0
