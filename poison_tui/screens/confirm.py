"""Confirmation before a bulk decision: says how many examples and which ones."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from poison_tui.widgets.literal import visible


class BulkConfirm(ModalScreen[bool]):
    DEFAULT_CSS = """
    BulkConfirm { align: center middle; }
    BulkConfirm > Vertical { width: 70; height: auto; border: thick $warning; background: $surface; padding: 1 2; }
    BulkConfirm Horizontal { height: auto; margin-top: 1; }
    BulkConfirm Button { margin-right: 2; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes", id="confirm.yes"),
        Binding("n,escape", "answer(False)", "No", id="confirm.no"),
    ]

    def __init__(self, action: str, count: int, scope: str, reason: str | None = None) -> None:
        super().__init__()
        self.action, self.count, self.scope, self.reason = action, count, scope, reason

    def compose(self) -> ComposeResult:
        body = Text()
        body.append(f"{self.action.capitalize()} {self.count:,} examples?\n", style="bold")
        body.append("scope: ", style="dim")
        body.append(visible(self.scope) + "\n")
        if self.reason:
            body.append("reason: ", style="dim")
            body.append(visible(self.reason) + "\n")
        body.append("One bulk decision: undo reverts all of it.", style="dim")
        with Vertical():
            yield Static(body)
            with Horizontal():
                # Text, not a str: a str label is parsed as markup and "[y]" would vanish
                yield Button(Text(f"[y] {self.action} {self.count:,}"), id="yes", variant="warning")
                yield Button(Text("[n] cancel"), id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()  # Enter on the default must not destroy work

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
