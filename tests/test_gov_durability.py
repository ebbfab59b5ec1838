"""Decisions survive SIGKILL, and two processes deciding at once never corrupt the chain."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
from pathlib import Path

from gov_fixtures import jsonl_workspace

from engine import audit
from engine.decisions import current_status, decide, status_counts
from engine.verify import verify
from engine.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]

# A child that decides one uid per call and prints each seq once decide() has returned,
# i.e. once the UI would show the decision as done.
CHILD = """
import os, sys, time
from engine.decisions import decide
from engine.workspace import Workspace
ws = Workspace.open(sys.argv[1])
action = sys.argv[2]
print("ready", flush=True)
while not os.path.exists(os.path.join(sys.argv[1], "go")):  # start together
    time.sleep(0.005)
for uid in sys.argv[3:]:
    seq = decide(ws, [uid], action, actor=action)[0]
    print(uid, seq, flush=True)
"""


def _child(ws: Path, action: str, uids: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(ws), action, *uids],
                            stdout=subprocess.PIPE, text=True, env=env)


def _start(ws: Path, *procs: subprocess.Popen) -> None:
    """Let the children go only once all have imported and opened the workspace."""
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    (ws / "go").touch()


def test_decisions_shown_as_done_survive_sigkill(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path, n=40)
    ws.close()
    proc = _child(ws.path, "remove", uids)
    _start(ws.path, proc)
    done = []
    assert proc.stdout is not None
    while len(done) < 8:
        line = proc.stdout.readline()
        assert line, "child died early"
        done.append(line.split())
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    ws = Workspace.open(ws.path)
    for uid, seq in done:
        assert current_status(ws, uid) == "remove"
        assert ws.conn.execute("SELECT uid FROM decisions WHERE seq = ?", (int(seq),)).fetchone()[0] == uid
    report = verify(ws.path)
    assert report.ok, report.first_problem
    # whatever the kill interrupted, the next decision brings the mirror level with the DB
    decide(ws, [uids[-1]], "keep")
    records, problem = audit.parse_lines(audit.mirror_path(ws).read_bytes())
    assert problem is None and audit.check_chain(records) is None
    assert len(records) == audit.head(ws.conn)[0]


def test_two_processes_deciding_at_once_keep_one_chain(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path, n=60)
    ws.close()
    a = _child(ws.path, "remove", uids[:30])
    b = _child(ws.path, "quarantine", uids[30:])
    _start(ws.path, a, b)
    out_a, _ = a.communicate(timeout=120)
    out_b, _ = b.communicate(timeout=120)
    assert a.returncode == 0 and b.returncode == 0
    assert len(out_a.splitlines()) == len(out_b.splitlines()) == 30  # "ready" was read by _start
    ws = Workspace.open(ws.path)
    assert status_counts(ws) == {"undecided": 0, "keep": 0, "quarantine": 30, "remove": 30}
    report = verify(ws.path)
    assert report.ok, report.first_problem
    assert any(c.name == "audit mirror" and "equals" in c.detail for c in report.checks)
    actors = [r[0] for r in ws.conn.execute("SELECT actor FROM decisions ORDER BY seq")]
    assert actors.count("remove") == actors.count("quarantine") == 30
    switches = sum(x != y for x, y in itertools.pairwise(actors))
    assert switches > 1, "the two writers did not interleave: the test did not test concurrency"
