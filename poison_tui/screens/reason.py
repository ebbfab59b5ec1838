"""Reason code and optional note for a quarantine or remove decision."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, OptionList, Static
from textual.widgets.option_list import Option

from engine.decisions import REASON_CODES


@dataclass(frozen=True)
class Reason:
    code: str
    note: str | None


class ReasonModal(ModalScreen[Reason | None]):
    """Enter on the list (or in the note) confirms; 1-9 pick a reason; Esc cancels."""

    DEFAULT_CSS = """
    ReasonModal { align: center middle; }
    ReasonModal > Vertical { width: 64; height: auto; border: thick $primary; background: $surface; padding: 0 1; }
    ReasonModal OptionList { height: auto; max-height: 10; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", id="reason.cancel"),
        *[Binding(str(i + 1), f"pick({i})", show=False, id=f"reason.pick{i + 1}")
          for i in range(len(REASON_CODES))],
    ]

    def __init__(self, action: str, count: int = 1, last: str | None = None) -> None:
        super().__init__()
        self.action, self.count, self.last = action, count, last

    def compose(self) -> ComposeResult:
        with Vertical():
            what = "example" if self.count == 1 else f"{self.count:,} examples"
            yield Static(Text(f"{self.action.capitalize()} {what}: why?", style="bold"))
            yield OptionList(
                *[Option(f"{i + 1}  {text}", id=code) for i, (code, text) in enumerate(REASON_CODES.items())],
                id="reasons",
            )
            yield Input(placeholder="optional note (Enter confirms)", id="note")

    def on_mount(self) -> None:
        codes = list(REASON_CODES)
        reasons = self.query_one(OptionList)
        reasons.highlighted = codes.index(self.last) if self.last in codes else 0
        reasons.focus()

    def action_pick(self, i: int) -> None:
        self.query_one(OptionList).highlighted = i

    def action_cancel(self) -> None:
        self.dismiss(None)

    def _confirm(self) -> None:
        reasons = self.query_one(OptionList)
        code = list(REASON_CODES)[reasons.highlighted or 0]
        note = self.query_one("#note", Input).value.strip()
        self.dismiss(Reason(code, note or None))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._confirm()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._confirm()
