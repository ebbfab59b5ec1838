from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from gov_fixtures import jsonl_workspace

import engine.atomic
from engine import audit
from engine.decisions import decide, undo
from engine.export import MANIFEST, QUARANTINE, REMOVED, export
from engine.verify import verify


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def test_no_decisions_gives_the_input_back_byte_for_byte(tmp_path: Path) -> None:
    ws, src, _ = jsonl_workspace(tmp_path)
    result = export(ws, tmp_path / "out")
    assert (tmp_path / "out" / "train.jsonl").read_bytes() == src.read_bytes()
    assert (tmp_path / "out" / QUARANTINE).read_bytes() == b""
    assert result.counts["output_records"] == 12 and result.counts["undecided"] == 12


def test_excluded_records_leave_the_file_and_are_listed(tmp_path: Path) -> None:
    ws, src, uids = jsonl_workspace(tmp_path)
    decide(ws, [uids[0]], "remove", reason="trigger_phrase", note="James \x1b[31mBond")
    decide(ws, [uids[5], uids[7]], "quarantine", reason="label_flip", bulk=True)
    decide(ws, [uids[3]], "keep")
    out = tmp_path / "out"
    result = export(ws, out)
    src_lines = _lines(src)
    expected = [line for i, line in enumerate(src_lines) if i not in (0, 5, 7)]
    assert _lines(out / "train.jsonl") == expected
    [removed] = [json.loads(x) for x in _lines(out / REMOVED)]
    assert (removed["uid"], removed["decision"], removed["reason"], removed["note"]) == (
        uids[0], "remove", "trigger_phrase", "James \x1b[31mBond")
    assert removed["record"].encode() + b"\n" == src_lines[0]
    assert removed["line"] == 1 and removed["source"] == "train.jsonl"
    quarantined = [json.loads(x) for x in _lines(out / QUARANTINE)]
    assert [q["uid"] for q in quarantined] == [uids[5], uids[7]]
    manifest = json.loads((out / MANIFEST).read_bytes())
    assert manifest["counts"] == {"keep": 1, "quarantine": 2, "remove": 1, "undecided": 8,
                                  "output_records": 9, "undecided_excluded": 0}
    assert manifest["inputs"][0]["sha256"] == audit.sha256_file(src)
    for name, digest in manifest["outputs"].items():
        assert audit.sha256_file(out / name) == digest
    assert manifest["model_fingerprint"] == "model-fp-1"
    # the export is an audit record naming every file's hash
    rec = json.loads(ws.conn.execute("SELECT record FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()[0])
    assert rec["action"] == "export" and rec["seq"] == result.audit_seq
    assert rec["files"] == result.files and rec["files"][MANIFEST] == audit.sha256_file(out / MANIFEST)


def test_same_decisions_give_the_same_bytes(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path)
    decide(ws, uids[:2], "remove")
    first = export(ws, tmp_path / "a").files
    second = export(ws, tmp_path / "b").files
    assert first == second  # manifest included: no timestamps, and exports do not move its head
    decide(ws, uids[2:3], "quarantine")
    undo(ws)
    # a decision and its undo change the log, so the manifest's decisions head moves...
    third = export(ws, tmp_path / "c").files
    assert third[MANIFEST] != first[MANIFEST]
    # ...but the data files are the same bytes
    assert {k: v for k, v in third.items() if k != MANIFEST} == {k: v for k, v in first.items() if k != MANIFEST}


def test_undecided_suspects_can_be_excluded(tmp_path: Path) -> None:
    ws, src, uids = jsonl_workspace(tmp_path)  # the detector flags uids[0] only
    result = export(ws, tmp_path / "out", undecided="exclude")
    assert result.counts["undecided_excluded"] == 1
    [q] = [json.loads(x) for x in _lines(tmp_path / "out" / QUARANTINE)]
    assert (q["uid"], q["decision"]) == (uids[0], "undecided")
    assert _lines(tmp_path / "out" / "train.jsonl") == _lines(src)[1:]
    assert verify(tmp_path / "out", workspace=ws.path).ok
    # once decided keep, it is no longer excluded
    decide(ws, uids[:1], "keep")
    assert export(ws, tmp_path / "out", undecided="exclude").counts["undecided_excluded"] == 0


def test_bad_policy_and_empty_workspace_are_user_errors(tmp_path: Path) -> None:
    from engine.errors import UserError
    from engine.workspace import Workspace

    ws, _, _ = jsonl_workspace(tmp_path)
    with pytest.raises(UserError, match="--undecided"):
        export(ws, undecided="drop")
    with pytest.raises(UserError, match="no training dataset"):
        export(Workspace.create(tmp_path / "empty"))


class Crash(Exception):
    pass


def test_crash_during_export_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, src, uids = jsonl_workspace(tmp_path)
    out = tmp_path / "out"
    export(ws, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    n_records = audit.head(ws.conn)[0]
    decide(ws, uids[:3], "remove")

    real_fsync, calls = os.fsync, []

    def dying_fsync(fd: int) -> None:
        calls.append(fd)
        # files go out in name order, manifest last, each with a file and a directory fsync:
        # the 7th call is the new manifest's, written to its temp file but not yet renamed
        if len(calls) == 7:
            raise Crash()
        real_fsync(fd)

    monkeypatch.setattr(engine.atomic.os, "fsync", dying_fsync)
    with pytest.raises(Crash):
        export(ws, out)
    monkeypatch.undo()
    crashed = {p.name: p.read_bytes() for p in out.iterdir()}
    assert set(crashed) == set(before), "no temporary file left behind"
    assert crashed[MANIFEST] == before[MANIFEST]
    assert crashed["train.jsonl"] != before["train.jsonl"]  # the data files were replaced, whole
    assert audit.head(ws.conn)[0] == n_records + 3, "no export record for the failed export"
    report = verify(out, workspace=ws.path)
    assert not report.ok and "does not match the manifest" in report.first_problem.detail

    result = export(ws, out)
    final = {p.name: p.read_bytes() for p in out.iterdir()}
    for name, data in crashed.items():
        assert data in (before[name], final[name]), f"{name} is neither the old nor the new file"
    assert result.counts["remove"] == 3
    assert verify(out, workspace=ws.path).ok
    assert len(_lines(out / "train.jsonl")) == len(_lines(src)) - 3


def test_export_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    from engine.errors import UserError

    ws, src, _ = jsonl_workspace(tmp_path)
    before = src.read_bytes()
    with pytest.raises(UserError, match="would overwrite the input"):
        export(ws, src.parent)
    assert src.read_bytes() == before


def test_workspace_verify_follows_the_last_export(tmp_path: Path) -> None:
    ws, _, uids = jsonl_workspace(tmp_path)
    decide(ws, uids[:1], "remove")
    out = tmp_path / "elsewhere"
    export(ws, out)
    (out / REMOVED).write_bytes(b"")
    report = verify(ws.path)
    assert not report.ok and report.first_problem.name == "export: outputs"
