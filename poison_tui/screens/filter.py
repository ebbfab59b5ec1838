"""Filter the queue by status, task, score and flag, and search its text."""

from __future__ import annotations

from dataclasses import replace
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Select, Static

from engine.review_queries import STATUSES, QueueFilter
from poison_tui.widgets.literal import visible


class FilterModal(ModalScreen[QueueFilter | None]):
    DEFAULT_CSS = """
    FilterModal { align: center middle; }
    FilterModal > Vertical { width: 64; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    FilterModal Horizontal { height: auto; }
    FilterModal #error { color: $error; height: auto; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="filter.cancel")]

    def __init__(self, current: QueueFilter, tasks: list[str]) -> None:
        super().__init__()
        self.current, self.tasks = current, tasks

    def compose(self) -> ComposeResult:
        c = self.current
        with Vertical():
            yield Static(Text("Filter the queue", style="bold"))
            yield Label("status")
            yield Select([(s, s) for s in STATUSES], value=c.statuses[0] if len(c.statuses) == 1 else Select.NULL,
                         prompt="any status", id="status")
            yield Label("task")
            # task names come from the data: shown through visible(), passed back untouched
            yield Select([(Text(visible(t)), t) for t in self.tasks], value=c.task if c.task in self.tasks else Select.NULL,
                         prompt="any task", id="task")
            yield Label("minimum detector score")
            yield Input("" if c.min_score is None else f"{c.min_score:g}", placeholder="e.g. 0.5", id="min_score")
            yield Checkbox("flagged by the ranking detector only", c.flagged_only, id="flagged")
            yield Label("search (uid, id, definition, input, output)")
            yield Input(c.search, id="search")
            yield Static("", id="error")
            with Horizontal():
                yield Button("Apply", id="apply", variant="primary")
                yield Button("Clear all", id="clear")

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "clear":
            self.dismiss(QueueFilter())
        else:
            self._apply()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._apply()

    def _apply(self) -> None:
        raw = self.query_one("#min_score", Input).value.strip()
        try:
            min_score = float(raw) if raw else None
        except ValueError:
            self.query_one("#error", Static).update(Text(f"minimum score: {visible(raw)!r} is not a number"))
            return
        status = self.query_one("#status", Select).value
        task = self.query_one("#task", Select).value
        self.dismiss(QueueFilter(
            statuses=() if status is Select.NULL else (str(status),),
            task=None if task is Select.NULL else str(task),
            min_score=min_score,
            search=self.query_one("#search", Input).value.strip(),
            flagged_only=self.query_one("#flagged", Checkbox).value,
        ))


class SearchModal(ModalScreen[QueueFilter | None]):
    """``/``: a one-line search within the current filter (empty clears the search)."""

    DEFAULT_CSS = """
    SearchModal { align: center top; }
    SearchModal Input { width: 70; margin-top: 3; border: thick $primary; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", id="search.cancel")]

    def __init__(self, current: QueueFilter) -> None:
        super().__init__()
        self.current = current

    def compose(self) -> ComposeResult:
        yield Input(self.current.search, placeholder="search text (Enter applies, Esc cancels)")

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.dismiss(replace(self.current, search=event.value.strip()))
