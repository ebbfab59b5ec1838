"""The detail of one example, full screen (the queue's pane shows the same, smaller)."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widgets import Footer

from engine.review_queries import ExampleDetail
from poison_tui.widgets.detail_view import DetailView


class DetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,enter,o", "close", "Back to the queue", id="detail.close"),
    ]

    def __init__(self, detail: ExampleDetail) -> None:
        super().__init__()
        self.detail = detail

    def compose(self) -> ComposeResult:
        yield DetailView(id="detail-full")
        yield Footer()

    def on_mount(self) -> None:
        view = self.query_one(DetailView)
        view.show(self.detail)
        view.focus()

    def action_close(self) -> None:
        self.dismiss(None)
