"""Help: every key binding with its id (for the keymap file) and the operator's checklist."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown, Static

from poison_tui.keymap import default_keymap_path

CHECKLIST = Path(__file__).resolve().parents[2] / "docs" / "checklist.md"


class HelpScreen(ModalScreen[None]):
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 90%; height: 90%; border: thick $primary; background: $surface; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "close", "Close", id="help.close"),
    ]

    def __init__(self, bindings: list[tuple[str, str, str]], checklist: Path = CHECKLIST) -> None:
        """``bindings``: (id, keys as currently mapped, description)."""
        super().__init__()
        self.bindings, self.checklist = bindings, checklist

    def compose(self) -> ComposeResult:
        table = Table(title="Keys", title_justify="left", expand=True)
        table.add_column("keys", style="bold")
        table.add_column("does")
        table.add_column("binding id (remap in the keymap file)", style="dim")
        for binding_id, keys, description in self.bindings:
            table.add_row(keys, description, binding_id)
        note = Text(f"\nKeymap file: {default_keymap_path()} (or --keymap FILE), e.g.\n"
                    '  [keymap]\n  "review.keep" = "z"\n', style="dim")
        with VerticalScroll():
            # the checklist first: it is what an operator must not skip
            if self.checklist.is_file():
                # our own documentation, not data: rendering its Markdown is intended
                yield Markdown(self.checklist.read_text(encoding="utf-8"), id="checklist")
            else:
                yield Static(Text("(no operator's checklist: docs/checklist.md is missing)", style="dim"))
            yield Static(table)
            yield Static(note)

    def action_close(self) -> None:
        self.dismiss(None)
