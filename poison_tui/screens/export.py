"""Export the cleaned dataset and sign it off, from inside the app (engine.export/signing do
the work in a thread worker; these screens only collect the choices and show the result)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from engine.errors import UserError
from engine.workspace import Workspace
from poison_tui.messages import JobFinished
from poison_tui.widgets.literal import visible

_CSS = """
{name} {{ align: center middle; }}
{name} > Vertical {{ width: 80; height: auto; max-height: 90%; border: thick $primary; background: $surface; padding: 0 1; }}
{name} Horizontal {{ height: auto; }}
{name} #result {{ height: auto; margin-top: 1; }}
"""


class _JobModal(ModalScreen[str | None]):
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Close", id="job.close")]

    def __init__(self, ws: Workspace, actor: str) -> None:
        super().__init__()
        self.ws, self.actor = ws, actor
        self.running = False
        self.summary: str | None = None

    def action_close(self) -> None:
        if not self.running:  # leaving mid-write would hide the outcome, not stop the write
            self.dismiss(self.summary)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "go":
            self._start()
        else:
            self.action_close()

    def _start(self) -> None:
        if self.running:
            return
        self.running = True
        self.query_one("#result", Static).update(Text("working…", style="bold"))
        self._run(self.params())  # read on the UI thread: the worker never touches widgets

    @work(thread=True, exclusive=True, group="export", exit_on_error=False)
    def _run(self, params: dict) -> None:
        try:
            summary = self.work_in_thread(params)
        except UserError as exc:
            self.post_message(JobFinished("", str(exc)))
        except Exception as exc:  # shown, never a traceback over the UI
            self.post_message(JobFinished("", f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(JobFinished(summary))
        finally:
            self.ws.close()

    def params(self) -> dict:
        raise NotImplementedError

    def work_in_thread(self, params: dict) -> str:
        raise NotImplementedError

    @on(JobFinished)
    def _done(self, message: JobFinished) -> None:
        self.running = False
        result = self.query_one("#result", Static)
        if message.error:
            result.update(Text("failed: " + visible(message.error), style="bold red"))
        else:
            self.summary = message.summary
            result.update(Text(visible(message.summary, keep_newlines=True).replace("⏎", ""), style="green"))


class ExportScreen(_JobModal):
    DEFAULT_CSS = _CSS.format(name="ExportScreen")

    def compose(self) -> ComposeResult:
        from engine.export import default_out_dir

        with Vertical():
            yield Static(Text("Export the cleaned dataset", style="bold"))
            yield Label("output directory")
            yield Input(str(default_out_dir(self.ws)), id="out")
            yield Checkbox("also exclude flagged suspects nobody decided", False, id="exclude")
            with Horizontal():
                yield Button("Export", id="go", variant="primary")
                yield Button("Close", id="close")
            yield Static("", id="result")

    def params(self) -> dict:
        return {"out": Path(self.query_one("#out", Input).value.strip() or "."),
                "undecided": "exclude" if self.query_one("#exclude", Checkbox).value else "keep"}

    def work_in_thread(self, params: dict) -> str:
        from engine.export import export

        res = export(self.ws, params["out"], undecided=params["undecided"], actor=self.actor)
        counts = ", ".join(f"{k} {v}" for k, v in sorted(res.counts.items()))
        files = "\n".join(f"  {name}  sha256 {digest[:16]}…" for name, digest in sorted(res.files.items()))
        return f"exported to {res.out_dir}\n{counts}\n{files}\naudit record #{res.audit_seq}"


class SignoffScreen(_JobModal):
    DEFAULT_CSS = _CSS.format(name="SignoffScreen")

    def compose(self) -> ComposeResult:
        from engine.signing import default_key_path, signoff_summary

        with Vertical():
            yield Static(Text("Sign off the export", style="bold"))
            try:
                s = signoff_summary(self.ws)
            except UserError as exc:
                yield Static(Text(visible(str(exc)), style="bold red"))
                yield Static(Text("Export first (e), then sign off.", style="dim"))
                yield Static("", id="result")
                return
            lines = [f"bundle {s.out_dir}", "counts " + ", ".join(f"{k} {v}" for k, v in sorted(s.counts.items())),
                     f"audit head #{s.audit_head[0]} {s.audit_head[1][:16]}…",
                     f"model {s.model_fingerprint or '—'}"]
            lines += [f"  {name}  {digest[:16]}…" for name, digest in sorted(s.files.items())]
            yield Static(Text(visible("\n".join(lines), keep_newlines=True).replace("⏎", "")))
            yield Label("your identity (name or e-mail), as it will appear in the signature")
            yield Input(id="identity")
            yield Label("signing key")
            yield Input(str(default_key_path()), id="key")
            yield Checkbox("OpenSSH key (sign with ssh-keygen -Y sign)", False, id="ssh")
            yield Label("passphrase (poison-tui keys)")
            yield Input(password=True, id="passphrase")
            with Horizontal():
                yield Button("Sign", id="go", variant="primary")
                yield Button("Close", id="close")
            yield Static("", id="result")

    def params(self) -> dict:
        from engine.signing import Signer

        ssh = self.query_one("#ssh", Checkbox).value
        signer = Signer(Path(self.query_one("#key", Input).value.strip()),
                        None if ssh else self.query_one("#passphrase", Input).value.encode(), ssh=ssh)
        return {"signer": signer, "identity": self.query_one("#identity", Input).value}

    def work_in_thread(self, params: dict) -> str:
        from engine.signing import signoff

        res = signoff(self.ws, params["identity"], params["signer"], actor=self.actor)
        return f"signed: {res.envelope_path}\nkey {res.key_fingerprint}\naudit record #{res.audit_seq}"
