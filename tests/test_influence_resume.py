"""A scan killed with SIGKILL resumes from its last committed chunk and ends with identical scores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from influence_fixtures import make_gpt2, make_workspace

from engine.influence import last_report, scan
from engine.influence.scanner import ScanSettings

SETTINGS = dict(chunk_size=4, batch_size=4)
N = 20

CHILD = textwrap.dedent("""
    import sys, time
    from engine.influence import scan
    from engine.influence.scanner import ScanSettings
    from engine.workspace import Workspace

    def slow(ev):
        # Hold the process between chunks so the parent can kill it mid-run.
        if ev.stage == "scores" and ev.done > 0:
            time.sleep(0.5)

    scan(Workspace.open(sys.argv[1]), sys.argv[2], ScanSettings(chunk_size=4, batch_size=4), slow)
""")


def scores(ws) -> dict[tuple[str, str], float]:
    return {(r[0], r[1]): r[2] for r in ws.conn.execute("SELECT query_set_id, uid, score FROM influence")}


@pytest.mark.slow
def test_sigkill_mid_scan_then_resume_gives_identical_scores(tmp_path: Path) -> None:
    model = make_gpt2(tmp_path / "gpt2", n_layer=2, n_embd=8)
    reference_ws = make_workspace(tmp_path / "ref", n_train=N)
    scan(reference_ws, model, ScanSettings(**SETTINGS))
    reference = scores(reference_ws)

    ws = make_workspace(tmp_path / "ws", n_train=N)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(ws.path), str(model)], env=env)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and child.poll() is None:
            done = ws.conn.execute("SELECT COUNT(DISTINCT uid) FROM influence").fetchone()[0]
            if done >= 8:
                break
            time.sleep(0.05)
        assert child.poll() is None, "the scan finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL
    partial = ws.conn.execute("SELECT COUNT(DISTINCT uid) FROM influence").fetchone()[0]
    assert 8 <= partial < N and partial % 4 == 0  # whole chunks only: nothing half-written
    assert ws.conn.execute("SELECT status FROM scan_runs").fetchone()[0] == "running"

    events = []
    scan(ws, model, ScanSettings(**SETTINGS), events.append)
    assert last_report().factors_cached  # the factors survived the kill
    assert next(e.total for e in events if e.stage == "scores") == N - partial  # resumed, not restarted
    assert scores(ws) == reference  # bit-identical to the uninterrupted run
    assert ws.conn.execute("SELECT status FROM scan_runs").fetchone()[0] == "complete"
