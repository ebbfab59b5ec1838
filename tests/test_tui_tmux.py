"""The real app in a real terminal (tmux): keys in, screen out, then the database.

Also the durability promise: SIGKILL right after the screen shows a decision loses nothing,
and a second app on the same workspace is refused while the first runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from tui_fixtures import make_workspace, statuses

from engine import audit
from poison_tui.lock import LOCK_NAME

pytestmark = [
    pytest.mark.tmux,
    pytest.mark.slow,  # about 10 s: three real app starts; kept in the default run (the only real-terminal check)
    pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed"),
]
REPO = Path(__file__).resolve().parents[1]


class Tmux:
    """One private tmux server (-L) per test, so nothing touches anyone else's sessions."""

    def __init__(self) -> None:
        self.socket = f"poison-tui-test-{uuid.uuid4().hex[:8]}"

    def run(self, *args: str) -> str:
        return subprocess.run(["tmux", "-L", self.socket, *args], check=True, capture_output=True,
                              text=True).stdout

    def start(self, name: str, command: str) -> None:
        self.run("new-session", "-d", "-s", name, "-x", "120", "-y", "40", "-c", str(REPO), command)

    def screen(self, name: str) -> str:
        return self.run("capture-pane", "-p", "-t", name)

    def wait_for(self, name: str, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            shown = self.screen(name)
            if text in shown:
                return shown
            time.sleep(0.1)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen(name)}")

    def keys(self, name: str, *keys: str) -> None:
        self.run("send-keys", "-t", name, *keys)

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True)


@pytest.fixture
def tmux():
    t = Tmux()
    yield t
    t.close()


def _review(ws_path: Path, actor: str) -> str:
    env = f"POISON_TUI_ACTOR={actor} TERM=xterm-256color"
    return (f"env -u COLUMNS -u LINES {env} {sys.executable} -m poison_tui review {ws_path}; "
            "echo EXIT=$?; sleep 60")


def test_real_terminal_decisions_survive_sigkill(tmux: Tmux, tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "demo.poison", n=40)
    tmux.start("a", _review(ws.path, "tmux-analyst"))
    shown = tmux.wait_for("a", "by ekfac_sentiment")
    assert "[bold red]URGENT[/bold red]" in shown  # markup shown as typed
    assert "␛[31mred alert" in shown  # the escape made visible, not executed
    tmux.keys("a", "a")
    tmux.wait_for("a", "keep 1  quarantine")
    tmux.keys("a", "x")
    tmux.wait_for("a", "why?")
    tmux.keys("a", "Enter")
    tmux.wait_for("a", "remove 1  │")
    tmux.keys("a", "space", "space", "q")  # bulk: ranks 3 and 4
    tmux.wait_for("a", "why?")
    tmux.keys("a", "Enter")
    tmux.wait_for("a", "Quarantine 2 examples?")
    tmux.keys("a", "y")
    tmux.wait_for("a", "quarantine 2  remove")

    # a second reviewer on the same workspace is refused with a clear message
    tmux.start("b", _review(ws.path, "intruder"))
    second = "".join(tmux.wait_for("b", "EXIT=").split())  # the terminal wraps the long path
    assert "alreadyopeninanotherpoison-tuireview(pid" in second and "EXIT=2" in second

    pid = int((ws.path / LOCK_NAME).read_text().split()[0])
    os.kill(pid, signal.SIGKILL)  # no chance to flush or clean up anything
    tmux.wait_for("a", "EXIT=137")

    expected = {"ex000000": "keep", "ex000001": "remove", "ex000002": "quarantine", "ex000003": "quarantine"}
    assert statuses(ws) == expected
    with ws.connect() as conn:
        records = [json.loads(r[0]) for r in conn.execute("SELECT record FROM audit_log ORDER BY seq")]
        actors = {r[0] for r in conn.execute("SELECT actor FROM decisions")}
    assert [r["action"] for r in records][:2] == ["keep", "remove"]
    assert [r["action"] for r in records].count("quarantine") == 2
    assert audit.check_chain(records) is None
    assert actors == {"tmux-analyst"}

    # the kernel dropped the dead app's lock: it reopens, shows the recorded state, quits cleanly
    tmux.start("c", _review(ws.path, "tmux-analyst"))
    assert "keep 1  quarantine 2  remove 1" in tmux.wait_for("c", "by ekfac_sentiment")
    tmux.keys("c", "C-q")
    assert "EXIT=0" in tmux.wait_for("c", "EXIT=")
