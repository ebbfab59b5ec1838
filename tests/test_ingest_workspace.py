"""Ingest into a real workspace: one transaction, stable uids, idempotence, query sets, info."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from ingest_fixtures import REVIEWS, TASK, alpaca_records, sni_jsonl_lines, sni_task_json, write_jsonl

from engine.errors import Cancelled, InputError, UserError
from engine.formats import write_records
from engine.ingest import SKIP_REPORT, ingest, train_dataset
from engine.progress import CancelToken, ProgressEvent
from engine.queries import list_query_sets, load_queries, register_query_set
from engine.workspace import Workspace
from poison_tui.cli import main


def dump(ws_path: Path) -> list[str]:
    conn = sqlite3.connect(ws_path / "poison.db")
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


@pytest.fixture
def data(tmp_path: Path) -> dict[str, Path]:
    evals = tmp_path / "evals"
    evals.mkdir()
    sni_task_json(evals / "task950_food_polarity.json", n=8)
    write_jsonl(evals / "task951_hotel.jsonl", sni_jsonl_lines("task951_hotel", n=4, label_space=True))
    (evals / "task950_food_polarity.meta.json").write_text("{}")  # side files are not tasks
    return {"train": write_jsonl(tmp_path / "train.jsonl", sni_jsonl_lines(n=12)), "evals": evals}


def test_ingest_stores_examples_and_original_query_sets(tmp_path: Path, data: dict[str, Path]) -> None:
    report = ingest(tmp_path / "ws", data["train"], [data["evals"]])
    assert [(d.role, d.format, d.n_records, d.status) for d in report.datasets] == [
        ("train", "sni-jsonl", 12, "new"), ("eval", "sni-json", 8, "new"), ("eval", "sni-jsonl", 4, "new")]
    ws = Workspace.open(tmp_path / "ws")
    rows = ws.conn.execute("SELECT role, task, COUNT(*) FROM examples GROUP BY role, task ORDER BY 1, 2").fetchall()
    assert [tuple(r) for r in rows] == [("eval", "task950_food_polarity", 8), ("eval", "task951_hotel", 4),
                                        ("train", TASK, 12)]
    ex = ws.conn.execute("SELECT * FROM examples WHERE role = 'train' ORDER BY ordinal LIMIT 1").fetchone()
    assert (ex["input"], ex["output"], ex["source_line"], ex["source_file"]) == (
        REVIEWS[0][0], "positive", 1, str(data["train"].resolve()))
    assert json.loads(ex["label_space"]) == ["negative", "positive"]  # inferred: 2 short labels
    sets = {q["id"]: q for q in list_query_sets(ws)}
    assert set(sets) == {"task950_food_polarity::original", "task951_hotel::original"}
    queries = load_queries(ws, "task950_food_polarity::original")
    assert len(queries) == sets["task950_food_polarity::original"]["n_queries"] == 8
    uids = [r[0] for r in ws.conn.execute(
        "SELECT uid FROM examples WHERE task = 'task950_food_polarity' ORDER BY ordinal")]
    assert [q.source_uid for q in queries] == uids and queries[1].output == "negative"
    import hashlib

    train = train_dataset(ws)
    assert train["id"] == report.datasets[0].dataset_id
    assert train["sha256"] == hashlib.sha256(data["train"].read_bytes()).hexdigest()


def test_uids_are_stable_across_workspaces(tmp_path: Path, data: dict[str, Path]) -> None:
    ingest(tmp_path / "a", data["train"], [data["evals"]])
    ingest(tmp_path / "b", data["train"], [data["evals"]])
    q = "SELECT uid, role, task, source_id FROM examples ORDER BY uid"
    a, b = Workspace.open(tmp_path / "a"), Workspace.open(tmp_path / "b")
    rows_a = [tuple(r) for r in a.conn.execute(q)]
    assert rows_a == [tuple(r) for r in b.conn.execute(q)]
    assert len({r[0] for r in rows_a}) == 24 and all(u.startswith(("tr-", "ev-")) for u, *_ in rows_a)


def test_reingest_is_idempotent(tmp_path: Path, data: dict[str, Path]) -> None:
    ingest(tmp_path / "ws", data["train"], [data["evals"]])
    before = dump(tmp_path / "ws")
    report = ingest(tmp_path / "ws", data["train"], [data["evals"]])
    assert {d.status for d in report.datasets} == {"unchanged"}
    assert dump(tmp_path / "ws") == before


def test_failed_ingest_leaves_the_workspace_unchanged(tmp_path: Path, data: dict[str, Path]) -> None:
    ingest(tmp_path / "ws", data["train"], [])
    before = dump(tmp_path / "ws")
    bad = tmp_path / "bad_eval.jsonl"
    bad.write_bytes(json.dumps(sni_jsonl_lines("t2")[0]).encode() + b"\n{oops\n")
    with pytest.raises(InputError):
        ingest(tmp_path / "ws", data["train"], [data["evals"], bad])
    assert dump(tmp_path / "ws") == before
    # a conflict found inside the transaction rolls back the eval datasets already written
    other = write_jsonl(tmp_path / "other.jsonl", sni_jsonl_lines(n=3))
    with pytest.raises(UserError, match="already holds the training set"):
        ingest(tmp_path / "ws", other, [data["evals"]])
    assert dump(tmp_path / "ws") == before
    # and a new workspace is not even created
    with pytest.raises(InputError):
        ingest(tmp_path / "fresh", bad, [])
    assert not (tmp_path / "fresh").exists()
    # cancelled while writing: the new database goes, but never a folder that was already there
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    for target in (tmp_path / "mine", tmp_path / "ws"):
        token = CancelToken()

        def cancel_when_storing(ev: ProgressEvent, token: CancelToken = token) -> None:
            if ev.stage.startswith("store") and ev.done:
                token.cancel()

        with pytest.raises(Cancelled):
            ingest(target, data["train"], [data["evals"]], progress=cancel_when_storing, token=token)
    assert [p.name for p in (tmp_path / "mine").iterdir()] == ["notes.txt"]
    assert dump(tmp_path / "ws") == before


def test_different_training_file_needs_replace(tmp_path: Path, data: dict[str, Path],
                                               capsys: pytest.CaptureFixture[str]) -> None:
    ingest(tmp_path / "ws", data["train"], [data["evals"]])
    other = write_jsonl(tmp_path / "other.jsonl", sni_jsonl_lines(n=3))
    rc = main(["ingest", str(other), "--workspace", str(tmp_path / "ws")])
    err = capsys.readouterr().err
    assert rc == 2 and "Use a new --workspace, or --replace" in err and "Traceback" not in err
    ws = Workspace.open(tmp_path / "ws")
    old_uid = ws.conn.execute("SELECT uid FROM examples WHERE role = 'train' AND ordinal = 5").fetchone()[0]
    ws.conn.execute("INSERT INTO self_influence VALUES ('r', ?, 1.0)", (old_uid,))
    report = ingest(ws, other, [], replace=True)
    assert report.datasets[0].status == "replaced" and "scores and rankings were dropped" in report.warnings[0]
    assert ws.conn.execute("SELECT COUNT(*) FROM examples WHERE role = 'train'").fetchone()[0] == 3
    assert ws.conn.execute("SELECT COUNT(*) FROM self_influence").fetchone()[0] == 0
    assert ws.conn.execute("SELECT COUNT(*) FROM examples WHERE role = 'eval'").fetchone()[0] == 12


def test_replace_is_refused_once_decisions_exist(tmp_path: Path, data: dict[str, Path]) -> None:
    ws = Workspace.create(tmp_path / "ws")
    ingest(ws, data["train"], [])
    ws.conn.execute("INSERT INTO decisions (ts, actor, uid, action, prior_status, new_status) "
                    "VALUES ('t', 'a', 'u', 'remove', 'undecided', 'remove')")
    with pytest.raises(UserError, match="review decision"):
        ingest(ws, write_jsonl(tmp_path / "o.jsonl", sni_jsonl_lines(n=2)), [], replace=True)


def test_duplicate_ids_get_deterministic_suffixes_and_a_warning(tmp_path: Path) -> None:
    recs = sni_jsonl_lines(n=4)
    recs[2]["id"] = recs[0]["id"]
    recs.append(recs[1])  # an exact repeat, same id
    path = write_jsonl(tmp_path / "d.jsonl", recs)
    report = ingest(tmp_path / "ws", path, [])
    [warning] = report.warnings
    assert "2 duplicate record(s)" in warning and f"id '{TASK}-0' at line 3 repeats line 1" in warning
    uids = [r[0] for r in Workspace.open(tmp_path / "ws").conn.execute("SELECT uid FROM examples ORDER BY ordinal")]
    assert uids[2] == uids[0] + "-2" and uids[4] == uids[1] + "-2" and len(set(uids)) == 5
    report2 = ingest(tmp_path / "ws2", path, [])
    assert report2.warnings == report.warnings
    uids2 = [r[0] for r in Workspace.open(tmp_path / "ws2").conn.execute("SELECT uid FROM examples ORDER BY ordinal")]
    assert uids2 == uids


def test_cli_prints_warnings_and_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recs = sni_jsonl_lines(n=3)
    path = write_jsonl(tmp_path / "train.jsonl", [*recs, recs[0]])
    assert main(["ingest", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "warning: " in err and "1 duplicate record(s)" in err
    assert f"workspace: {tmp_path / 'train.poison'}" in out and "4 records" in out and "new" in out
    assert (tmp_path / "train.poison" / "poison.db").is_file()


def test_records_without_ids_are_keyed_by_content(tmp_path: Path) -> None:
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    ingest(tmp_path / "ws", write_jsonl(tmp_path / "v1" / "a.jsonl", alpaca_records(6)), [])
    edited = alpaca_records(6)
    edited[3]["output"] = "positive"  # one record's content changes
    ingest(tmp_path / "ws2", write_jsonl(tmp_path / "v2" / "a.jsonl", edited), [])
    a = [r[0] for r in Workspace.open(tmp_path / "ws").conn.execute("SELECT uid FROM examples ORDER BY ordinal")]
    b = [r[0] for r in Workspace.open(tmp_path / "ws2").conn.execute("SELECT uid FROM examples ORDER BY ordinal")]
    assert [x == y for x, y in zip(a, b, strict=True)] == [True, True, True, False, True, True]


def test_label_spaces(tmp_path: Path) -> None:
    free = [{"instruction": "Summarise", "input": f"text {i}", "output": f"a summary number {i}"} for i in range(8)]
    labelled = [{**r, "task": "cls", "label_space": ["x", "y", "z"]} for r in alpaca_records(3)]
    path = write_jsonl(tmp_path / "mix.jsonl", free + labelled)
    ingest(tmp_path / "ws", path, [])
    ws = Workspace.open(tmp_path / "ws")
    spaces = dict(ws.conn.execute("SELECT task, label_space FROM examples GROUP BY task").fetchall())
    assert spaces == {"mix": None, "cls": '["x", "y", "z"]'}


def test_eval_task_in_two_files_is_an_error(tmp_path: Path, data: dict[str, Path]) -> None:
    dup = write_jsonl(tmp_path / "again.jsonl", sni_jsonl_lines("task951_hotel", n=2))
    with pytest.raises(UserError, match="task951_hotel' appears in both"):
        ingest(tmp_path / "ws", data["train"], [data["evals"], dup])


def test_changed_eval_file_replaces_its_queries(tmp_path: Path, data: dict[str, Path]) -> None:
    ingest(tmp_path / "ws", data["train"], [data["evals"]])
    ws = Workspace.open(tmp_path / "ws")
    sha = {q["id"]: q["sha256"] for q in list_query_sets(ws)}
    write_jsonl(data["evals"] / "task951_hotel.jsonl", sni_jsonl_lines("task951_hotel", n=3, label_space=True))
    report = ingest(ws, data["train"], [data["evals"]])
    assert [d.status for d in report.datasets] == ["unchanged", "unchanged", "replaced"]
    after = {q["id"]: q for q in list_query_sets(ws)}
    assert after["task950_food_polarity::original"]["sha256"] == sha["task950_food_polarity::original"]
    assert after["task951_hotel::original"]["sha256"] != sha["task951_hotel::original"]
    assert after["task951_hotel::original"]["n_queries"] == 3


def test_register_query_set_semantics(tmp_path: Path, data: dict[str, Path]) -> None:
    ingest(tmp_path / "ws", data["train"], [data["evals"]])
    ws = Workspace.open(tmp_path / "ws")
    base = load_queries(ws, "task951_hotel::original")
    rows = [{"source_uid": q.source_uid, "definition": q.definition, "input": "Actually, " + q.input,
             "output": q.output, "label_space": q.label_space, "changed": True} for q in base]
    qs = register_query_set(ws, "task951_hotel", "prefix", rows, {"transform": "prefix"})
    assert qs == "task951_hotel::prefix"
    first = {q["id"]: q for q in list_query_sets(ws)}[qs]
    assert first["params"] == {"transform": "prefix"} and first["n_queries"] == 4
    # identical content: a no-op, even with other params
    register_query_set(ws, "task951_hotel", "prefix", rows, {"transform": "other"})
    assert {q["id"]: q for q in list_query_sets(ws)}[qs] == first
    # different content: replaced, new sha
    register_query_set(ws, "task951_hotel", "prefix", rows[:2], {"transform": "prefix"})
    second = {q["id"]: q for q in list_query_sets(ws)}[qs]
    assert second["sha256"] != first["sha256"] and len(load_queries(ws, qs)) == 2
    assert all(q.changed and q.label_space == ["negative", "positive"] for q in load_queries(ws, qs))
    with pytest.raises(ValueError, match="no queries"):
        register_query_set(ws, "task951_hotel", "empty", [])
    with pytest.raises(ValueError, match="lacks 'output'"):
        register_query_set(ws, "task951_hotel", "x", [{"source_uid": "u", "definition": "", "input": ""}])


def test_export_from_the_workspace_rebuilds_the_file(tmp_path: Path, data: dict[str, Path]) -> None:
    path = write_jsonl(tmp_path / "crlf.jsonl", sni_jsonl_lines(n=5), newline="\r\n", final=False, bom=True)
    ingest(tmp_path / "ws", path, [])
    ws = Workspace.open(tmp_path / "ws")
    ds = train_dataset(ws)
    raws = [r[0] for r in ws.conn.execute("SELECT raw FROM examples WHERE dataset_id = ? ORDER BY ordinal",
                                          (ds["id"],))]
    buf = io.BytesIO()
    write_records(dict(ds), raws, buf)
    assert buf.getvalue() == path.read_bytes()


def test_info_shows_tasks_labels_and_hashes(tmp_path: Path, data: dict[str, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", str(data["train"]), "--eval", str(data["evals"]), "--workspace", str(tmp_path / "ws")]) == 0
    capsys.readouterr()
    assert main(["info", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "task950_food_polarity" in out and "negative: 6, positive: 6" in out
    assert Workspace.open(tmp_path / "ws").conn.execute(
        "SELECT sha256 FROM datasets WHERE role = 'train'").fetchone()[0][:16] in out
    assert main(["info", str(tmp_path / "ws"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert [(d["role"], d["format"], d["n_records"]) for d in info["datasets"]] == [
        ("train", "sni-jsonl", 12), ("eval", "sni-json", 8), ("eval", "sni-jsonl", 4)]
    hotel = next(t for t in info["tasks"] if t["task"] == "task951_hotel")
    assert hotel["labels"] == {"negative": 2, "positive": 2} and hotel["n"] == 4
    assert len(info["query_sets"]) == 2


def test_info_escapes_terminal_control_characters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    recs = [{**r, "task": "evil\x1b[31m[bold]x"} for r in alpaca_records(4)]
    ingest(tmp_path / "ws", write_jsonl(tmp_path / "e.jsonl", recs), [])
    assert main(["info", str(tmp_path / "ws")]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "evil\\x1b[31m[bold]x" in out


def test_info_on_a_missing_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(tmp_path / "nope")]) == 2
    assert "not a poison-tui workspace" in capsys.readouterr().err


def test_lenient_report_lives_in_the_workspace(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_bytes(json.dumps(alpaca_records(1)[0]).encode() + b"\n{x\n")
    from engine.formats import ReadOptions

    report = ingest(tmp_path / "ws", path, [], options=ReadOptions(lenient=True))
    assert report.skip_report == tmp_path / "ws" / SKIP_REPORT and len(report.skipped) == 1
    opts = json.loads(Workspace.open(tmp_path / "ws").conn.execute("SELECT options FROM datasets").fetchone()[0])
    assert opts["lenient"] is True and opts["skipped"] == 1


def test_eval_folder_lists_data_files_once(tmp_path: Path, data: dict[str, Path]) -> None:
    from engine.ingest import eval_files

    files = eval_files([data["evals"], data["evals"] / "task951_hotel.jsonl"])
    assert [f.name for f in files] == ["task950_food_polarity.json", "task951_hotel.jsonl"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no data files"):
        eval_files([tmp_path / "empty"])
