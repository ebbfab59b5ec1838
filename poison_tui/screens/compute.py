"""Compute (or recompute) the scores the queue ranks by, without freezing the UI.

The engine runs in a thread worker. It reports through ``ProgressFn`` events that the worker
forwards as messages (never touching a widget); Esc sets the cancel token, which the engine
checks between chunks, so work already committed stays valid for a resume.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Label, ProgressBar, Static

from engine.errors import Cancelled, UserError
from engine.progress import CancelToken, ProgressEvent, ProgressFn
from engine.workspace import Workspace
from poison_tui.messages import ComputeFinished, ComputeProgress
from poison_tui.widgets.literal import visible

ComputeJob = Callable[[Workspace, ProgressFn, CancelToken], None]
_POST_EVERY_S = 0.05  # a stage reporting every row would flood the message queue


def engine_job(ws: Workspace, progress: ProgressFn, token: CancelToken) -> None:
    """The detection pipeline the CLI's ``detect`` runs (mining, query sets, one EK-FAC scan,
    detectors), with the model and checkpoint of the workspace's last run when there is one;
    without a model only the data-only detectors run. It reports its own stages.
    """
    from pathlib import Path

    from engine.pipeline import detect

    model = ws.get_meta("model_path")
    checkpoint = ws.get_meta("checkpoint_path")
    detect(ws, Path(model) if model else None, Path(checkpoint) if checkpoint else None,
           progress=progress, token=token)


def format_eta(seconds: float | None) -> str:
    if seconds is None:
        return "eta —"
    whole = round(seconds)
    return f"eta {whole // 60}:{whole % 60:02d}"


class StageRow(Horizontal):
    DEFAULT_CSS = """
    StageRow { height: 1; }
    StageRow > .stage-name { width: 16; }
    StageRow > ProgressBar { width: 50; }
    StageRow > .stage-eta { width: 14; }
    StageRow > .stage-msg { width: 1fr; color: $text-muted; }
    """

    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def compose(self) -> ComposeResult:
        yield Label(Text(visible(self.stage)), classes="stage-name")
        yield ProgressBar(show_eta=False)
        yield Label("eta —", classes="stage-eta")
        yield Label("", classes="stage-msg")

    def show(self, ev: ProgressEvent, now: float) -> None:
        self.query_one(ProgressBar).update(total=ev.total or None, progress=ev.done)
        eta = None
        if 0 < ev.done < ev.total:
            eta = (now - ev.started_at) * (ev.total - ev.done) / ev.done
        elif ev.total and ev.done >= ev.total:
            eta = 0.0
        self.query_one(".stage-eta", Label).update(format_eta(eta))
        self.query_one(".stage-msg", Label).update(Text(visible(ev.message)))


class ComputeScreen(Screen[str]):
    """Dismisses with "done", "cancelled" or "failed"."""

    DEFAULT_CSS = """
    ComputeScreen > Vertical { padding: 1 2; }
    ComputeScreen #compute-title { text-style: bold; margin-bottom: 1; }
    ComputeScreen #compute-state { margin-top: 1; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel / back", id="compute.cancel"),
    ]

    def __init__(self, ws: Workspace, job: ComputeJob, reasons: tuple[str, ...] = (),
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.ws, self.job, self.reasons, self.clock = ws, job, reasons, clock
        self.token = CancelToken()
        self.outcome: str | None = None
        self._rows: dict[str, StageRow] = {}

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Static(Text("Computing scores", style="bold"), id="compute-title")
            why = Text("\n".join(f"• {visible(r)}" for r in self.reasons) or "• recompute requested",
                       style="dim")
            yield Static(why, id="compute-why")
            yield Vertical(id="stages")
            yield Static("running… (Esc cancels)", id="compute-state")
        yield Footer()

    def on_mount(self) -> None:
        self.run_job()

    def on_unmount(self) -> None:
        self.token.cancel()  # leaving the screen (or quitting) stops the engine at its next chunk

    @work(thread=True, exclusive=True, group="compute", exit_on_error=False)
    def run_job(self) -> None:
        last: dict[str, float] = {}

        def progress(ev: ProgressEvent) -> None:
            now = time.monotonic()
            if ev.done >= ev.total or now - last.get(ev.stage, 0.0) >= _POST_EVERY_S or ev.done == 0:
                last[ev.stage] = now
                self.post_message(ComputeProgress(ev))
            self.token.check()  # every engine stage reports progress, so this bounds cancel latency

        try:
            self.job(self.ws, progress, self.token)
        except Cancelled:
            self.post_message(ComputeFinished("cancelled"))
        except UserError as exc:
            self.post_message(ComputeFinished("failed", str(exc)))
        except Exception as exc:  # shown to the analyst; the queue stays usable
            self.post_message(ComputeFinished("failed", f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(ComputeFinished("done"))
        finally:
            self.ws.close()  # this thread's connection

    @on(ComputeProgress)
    async def _progress(self, message: ComputeProgress) -> None:
        ev = message.event
        row = self._rows.get(ev.stage)
        if row is None:
            row = self._rows[ev.stage] = StageRow(ev.stage)
            await self.query_one("#stages", Vertical).mount(row)
        row.show(ev, self.clock())

    @on(ComputeFinished)
    def _finished(self, message: ComputeFinished) -> None:
        self.outcome = message.outcome
        state = self.query_one("#compute-state", Static)
        if message.outcome == "done":
            self.dismiss("done")
        elif message.outcome == "cancelled":
            state.update(Text("cancelled: scores committed so far are kept. Esc goes back.", style="bold yellow"))
        else:
            state.update(Text(f"failed: {visible(message.error or '')}\nEsc goes back.", style="bold red"))

    def action_cancel(self) -> None:
        if self.outcome is None:
            self.token.cancel()
            self.query_one("#compute-state", Static).update(Text("cancelling…", style="bold yellow"))
        else:
            self.dismiss(self.outcome)
