"""Screening an appended training file keeps the cached scores of the rows that did not change."""

from __future__ import annotations

import json
from pathlib import Path

from engine.ingest import ingest
from engine.screen import carry_scores
from engine.workspace import Workspace


def sni_line(rid: str, text: str, label: str) -> str:
    return json.dumps({"id": rid, "Task": "task_movie", "Definition": ["Classify the review."],
                       "Instance": {"input": text, "output": [label]}, "label_space": ["positive", "negative"]})


def write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def fake_scores(ws: Workspace) -> list[str]:
    uids = [r[0] for r in ws.conn.execute("SELECT uid FROM examples WHERE role = 'train' ORDER BY ordinal")]
    with ws.transaction() as conn:
        for u in uids:
            conn.execute("INSERT INTO influence VALUES ('run', 'task_eval::original', 'sha', ?, 1.5)", (u,))
            conn.execute("INSERT INTO self_influence VALUES ('run', ?, 2.5)", (u,))
            conn.execute("INSERT INTO sentiment VALUES (?, 'vader', 0.5)", (u,))
    return uids


def test_appended_rows_are_the_only_ones_left_unscored(tmp_path: Path) -> None:
    base = [sni_line(f"r{i}", f"review number {i} was fine", "positive") for i in range(5)]
    evals = write(tmp_path / "task_eval.jsonl", [sni_line(f"e{i}", f"eval {i}", "negative") for i in range(4)])
    train = write(tmp_path / "train.jsonl", base)
    ws = Workspace.create(tmp_path / "w.poison")
    ingest(ws, train, [evals])
    old = fake_scores(ws)

    # two new rows, and row r1 edited in place (same id, new text): its old score must not survive
    edited = [*base[:1], sni_line("r1", "review number 1 was AWFUL", "positive"), *base[2:]]
    write(train, [*edited, sni_line("r5", "a new review", "negative"), sni_line("r6", "another", "positive")])
    with carry_scores(ws, train):
        ingest(ws, train, [evals], replace=True)

    now = [r[0] for r in ws.conn.execute("SELECT uid FROM examples WHERE role = 'train' ORDER BY ordinal")]
    assert len(now) == 7 and now[:5] == old  # uids are keyed on the record id
    scored = {r[0] for r in ws.conn.execute("SELECT uid FROM influence WHERE run_key = 'run'")}
    assert scored == {old[0], *old[2:]}
    assert {r[0] for r in ws.conn.execute("SELECT uid FROM self_influence")} == scored
    assert {r[0] for r in ws.conn.execute("SELECT key FROM sentiment")} == scored
    assert ws.conn.execute("SELECT DISTINCT score FROM influence").fetchall()[0][0] == 1.5
    # no temporary tables are left behind
    assert not ws.conn.execute("SELECT name FROM sqlite_temp_master WHERE type = 'table'").fetchall()


def test_unchanged_file_takes_no_snapshot(tmp_path: Path) -> None:
    train = write(tmp_path / "train.jsonl", [sni_line("r0", "fine", "positive"), sni_line("r1", "bad", "negative")])
    ws = Workspace.create(tmp_path / "w.poison")
    ingest(ws, train)
    fake_scores(ws)
    with carry_scores(ws, train):
        assert not ws.conn.execute("SELECT name FROM sqlite_temp_master WHERE type = 'table'").fetchall()
        report = ingest(ws, train, replace=True)
    assert report.datasets[0].status == "unchanged"
    assert ws.conn.execute("SELECT COUNT(*) FROM influence").fetchone()[0] == 2


def test_a_failed_ingest_keeps_everything(tmp_path: Path) -> None:
    import pytest

    from engine.errors import UserError

    train = write(tmp_path / "train.jsonl", [sni_line("r0", "fine", "positive"), sni_line("r1", "bad", "negative")])
    ws = Workspace.create(tmp_path / "w.poison")
    ingest(ws, train)
    fake_scores(ws)
    write(train, [sni_line("r0", "fine", "positive"), "{not json"])
    with pytest.raises(UserError), carry_scores(ws, train):
        ingest(ws, train, replace=True)
    assert ws.conn.execute("SELECT COUNT(*) FROM influence").fetchone()[0] == 2
    assert not ws.conn.execute("SELECT name FROM sqlite_temp_master WHERE type = 'table'").fetchall()
