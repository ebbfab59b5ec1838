from __future__ import annotations

import json
from pathlib import Path

import pytest
from gov_fixtures import jsonl_workspace

from engine import audit
from engine.decisions import (
    current_states,
    current_status,
    decide,
    history,
    replay,
    status_counts,
    undo,
)
from engine.errors import UserError


def _mirror(ws) -> list[dict]:
    return [json.loads(line) for line in audit.mirror_path(ws).read_text("utf-8").splitlines()]


def test_decide_updates_status_history_and_audit(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path)
    seqs = decide(ws, [uids[0]], "remove", reason="trigger_phrase", note="James Bond", actor="alice")
    assert len(seqs) == 1
    assert current_status(ws, uids[0]) == "remove"
    assert status_counts(ws) == {"undecided": 11, "keep": 0, "quarantine": 0, "remove": 1}
    [d] = history(ws, uids[0])
    assert (d.actor, d.action, d.prior_status, d.new_status, d.reason, d.note) == (
        "alice", "remove", "undecided", "remove", "trigger_phrase", "James Bond")
    [rec] = _mirror(ws)
    assert rec["seq"] == 1 and rec["prev_hash"] == audit.GENESIS_HASH
    assert rec["hash"] == audit.compute_hash(rec)
    assert rec["uid"] == uids[0] and rec["decision_seq"] == seqs[0]
    assert rec["item_sha256"] == ws.conn.execute(
        "SELECT content_sha256 FROM examples WHERE uid = ?", (uids[0],)).fetchone()[0]
    assert rec["evidence"]["detectors"] == {"ekfac": {"score": 1.0, "rank": 1, "flagged": True}}
    # imdb has twice the influence of sst2 in the fixture, so it ranks first
    assert [t["task"] for t in rec["evidence"]["top_tasks"]] == ["imdb", "sst2"]
    assert rec["evidence"]["top_tasks"][0]["influence"] == {"original": 1.0}
    prov = rec["provenance"]
    assert prov["model_fingerprint"] == "model-fp-1" and prov["scan_run"] == "run1"
    assert prov["dataset_sha256"] == ws.conn.execute("SELECT sha256 FROM datasets").fetchone()[0]
    assert prov["settings_sha256"] == audit.sha256_bytes(b'{"damping":0.001}')
    # the mirror line is byte for byte the DB record
    row = ws.conn.execute("SELECT record FROM audit_log WHERE seq = 1").fetchone()[0]
    assert audit.mirror_path(ws).read_bytes() == row.encode() + b"\n"


def test_bad_input_is_a_user_error(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path)
    with pytest.raises(UserError, match="unknown action"):
        decide(ws, uids[:1], "delete")
    with pytest.raises(UserError, match="unknown reason"):
        decide(ws, uids[:1], "remove", reason="because")
    with pytest.raises(UserError, match="nope"):
        decide(ws, [uids[0], "nope"], "remove")
    # nothing half-done: the valid uid in the failed call was not decided
    assert current_status(ws, uids[0]) == "undecided"
    assert audit.head(ws.conn) == (0, audit.GENESIS_HASH)


def test_undo_is_a_stack_of_reverts(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path)
    decide(ws, [uids[0]], "keep", reason="other", note="looked fine", actor="a")
    decide(ws, [uids[0]], "remove", reason="label_flip", actor="a")
    decide(ws, uids[1:4], "quarantine", reason="duplicate", bulk=True, actor="a")
    assert status_counts(ws)["quarantine"] == 3
    reverted = undo(ws, actor="b")
    assert len(reverted) == 3  # the whole bulk action
    assert status_counts(ws) == {"undecided": 11, "keep": 0, "quarantine": 0, "remove": 1}
    assert len(undo(ws, actor="b")) == 1
    assert current_status(ws, uids[0]) == "keep"
    states = dict(current_states(ws.conn))
    assert (states[uids[0]].reason, states[uids[0]].note) == ("other", "looked fine")
    assert len(undo(ws)) == 1
    assert current_status(ws, uids[0]) == "undecided"
    assert undo(ws) == []
    # history is kept: 2 decisions + 1 revert on uid 0
    assert [d.action for d in history(ws, uids[0])] == ["keep", "remove", "revert", "revert"]
    recs = _mirror(ws)
    assert audit.check_chain(recs) is None
    bulks = [r for r in recs if r["action"] == "bulk"]
    assert [(b["bulk_action"], b["count"]) for b in bulks] == [("quarantine", 3), ("revert", 3)]
    assert bulks[1]["reverts_bulk_id"] == bulks[0]["bulk_id"]
    # replaying the audit log rebuilds the derived status table
    assert replay(recs) == dict(current_states(ws.conn))


def test_new_decision_after_undo_is_undone_first(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path)
    decide(ws, [uids[0]], "keep")
    decide(ws, [uids[1]], "remove")
    undo(ws)  # reverts uid1
    decide(ws, [uids[2]], "quarantine")
    undo(ws)  # reverts uid2, not the revert
    assert [current_status(ws, u) for u in uids[:3]] == ["keep", "undecided", "undecided"]
    undo(ws)
    assert current_status(ws, uids[0]) == "undecided"


def test_actor_comes_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, _, uids = jsonl_workspace(tmp_path)
    monkeypatch.setenv("POISON_TUI_ACTOR", "carol@example.org")
    decide(ws, uids[:1], "keep")
    assert history(ws, uids[0])[0].actor == "carol@example.org"
    assert _mirror(ws)[0]["actor"] == "carol@example.org"


def test_mirror_lag_and_torn_line_are_repaired(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path)
    decide(ws, uids[:1], "keep")
    decide(ws, uids[1:2], "keep")
    path = audit.mirror_path(ws)
    full = path.read_bytes()
    first = full.split(b"\n")[0] + b"\n"
    path.write_bytes(first + b'{"seq":2,"tor')  # lagging, with a torn half-line
    decide(ws, uids[2:3], "remove")
    records, problem = audit.parse_lines(path.read_bytes())
    assert problem is None and [r["seq"] for r in records] == [1, 2, 3]
    assert audit.check_chain(records) is None


def test_diverged_mirror_is_set_aside_and_rewritten(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path)
    decide(ws, uids[:2], "keep")
    path = audit.mirror_path(ws)
    path.write_bytes(path.read_bytes().replace(b'"keep"', b'"remove"'))
    decide(ws, uids[2:3], "keep")
    assert path.with_name("audit.jsonl.diverged-1").exists()
    records, problem = audit.parse_lines(path.read_bytes())
    assert problem is None and len(records) == 3 and audit.check_chain(records) is None
