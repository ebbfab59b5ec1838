"""Ingestion: read a training set and evaluation tasks into a workspace, in one transaction.

Everything is read and checked before the database is touched, and all writes happen in a
single transaction, so a failed ingest leaves the workspace as it was (or creates none).
Re-ingesting the same files is a no-op; a different training file needs ``replace=True``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import orjson

from engine.atomic import atomic_write_bytes
from engine.errors import UserError
from engine.formats import DATA_SUFFIXES, ReadOptions, ReadResult, is_hf_disk, read_dataset
from engine.formats.base import Skipped, printable
from engine.progress import CancelToken, ProgressFn, Stage, no_progress
from engine.queries import ORIGINAL, delete_query_sets, original_rows, register_query_set
from engine.records import EXAMPLE_COLUMNS, Example, LabelSpaceJSON, Record, infer_label_space, make_uid
from engine.workspace import DB_NAME, Workspace, utc_now

SKIP_REPORT = "ingest-skipped.jsonl"
_INSERT_CHUNK = 5_000
# Rows that score or review training examples, dropped with the examples on --replace.
_DERIVED_BY_UID = (("influence", "uid"), ("self_influence", "uid"), ("detector_scores", "uid"),
                   ("review_status", "uid"), ("sentiment", "key"))


@dataclass
class DatasetReport:
    role: str
    path: str
    format: str
    n_records: int
    tasks: list[str]
    status: str  # new | unchanged | replaced
    skipped: int = 0
    dataset_id: int | None = None


@dataclass
class IngestReport:
    workspace: Path
    datasets: list[DatasetReport] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    skip_report: Path | None = None


@dataclass
class _Prepared:
    role: str
    path: Path
    result: ReadResult
    options: dict[str, object]
    examples: list[Example]


def eval_files(paths: Iterable[Path]) -> list[Path]:
    """Evaluation inputs: files as given; a folder gives its data files, one task per file."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir() and not is_hf_disk(p):
            found = sorted(c for c in p.iterdir() if not c.name.startswith(".") and (
                is_hf_disk(c) or (c.is_file() and c.suffix.lower() in DATA_SUFFIXES
                                  and not c.name.endswith(".meta.json"))))
            if not found:
                raise UserError(f"{p}: the evaluation folder holds no data files ({', '.join(DATA_SUFFIXES)})")
            out.extend(found)
        elif not p.exists():
            raise UserError(f"{p}: no such file or directory")
        else:
            out.append(p)
    unique: dict[Path, Path] = {}
    for p in out:  # a file named both alone and through its folder is read once
        unique.setdefault(p.resolve(), p)
    return list(unique.values())


def ingest(workspace: Workspace | Path, train: Path, evals: Sequence[Path] = (), fmt: str = "auto", *,
           eval_format: str = "auto", options: ReadOptions | None = None, replace: bool = False,
           progress: ProgressFn = no_progress, token: CancelToken | None = None) -> IngestReport:
    """Read ``train`` and the evaluation inputs, then store them in one transaction.

    Raises ``InputError``/``UserError`` for bad input or a conflicting workspace; the workspace
    is unchanged then. ``workspace`` may be a path: the workspace is created only once all input
    has been read successfully.
    """
    options = options or ReadOptions()
    files = eval_files(evals)
    report = IngestReport(Path(workspace.path if isinstance(workspace, Workspace) else workspace))
    prepared: list[_Prepared] = []
    with Stage(progress, "read", 1 + len(files), token) as stage:
        for role, path, f in [("train", Path(train), fmt)] + [("eval", p, eval_format) for p in files]:
            result = read_dataset(path, f, options)
            opts = {**options.as_json(), "skipped": len(result.skipped)}
            prepared.append(_Prepared(role, path.resolve(), result, opts, []))
            report.skipped.extend(result.skipped)
            stage.advance(message=path.name)
    _check_eval_tasks(prepared)
    for p in prepared:
        p.examples = _examples(p, report.warnings)

    ws_dir = report.workspace
    new_dir = not isinstance(workspace, Workspace) and not ws_dir.exists()
    new_db = not isinstance(workspace, Workspace) and not (ws_dir / DB_NAME).exists()
    ws = workspace if isinstance(workspace, Workspace) else None
    try:
        ws = ws or Workspace.create(ws_dir)
        conn = ws.conn
        cache = conn.execute("PRAGMA cache_size").fetchone()[0]
        # a big page cache keeps the uid index in memory while tens of MB go in (about 2x faster)
        conn.execute("PRAGMA cache_size = -262144")
        try:
            with ws.transaction(conn):
                for p in prepared:
                    report.datasets.append(_store(ws, conn, p, replace, report.warnings, progress, token))
        finally:
            conn.execute(f"PRAGMA cache_size = {int(cache)}")
    except BaseException:
        # leave no half-made workspace behind; never touch a directory that was there before
        if ws is not None and ws is not workspace:
            ws.close()
        if new_dir:
            shutil.rmtree(ws_dir, ignore_errors=True)
        elif new_db:
            for suffix in ("", "-wal", "-shm"):
                (ws_dir / (DB_NAME + suffix)).unlink(missing_ok=True)
        raise
    if ws is not workspace:
        ws.close()
    if report.skipped:
        report.skip_report = report.workspace / SKIP_REPORT
        atomic_write_bytes(report.skip_report, b"".join(orjson.dumps(s.as_json()) + b"\n" for s in report.skipped))
    return report


def _check_eval_tasks(prepared: list[_Prepared]) -> None:
    seen: dict[str, Path] = {}
    for p in prepared:
        if p.role != "eval":
            continue
        for task in {r.task for r in p.result.records}:
            if task in seen and seen[task] != p.path:
                raise UserError(f"evaluation task '{printable(task)}' appears in both {seen[task]} and {p.path}; "
                                "each task must come from one file")
            seen[task] = p.path


def _examples(p: _Prepared, warnings: list[str]) -> list[Example]:
    records = p.result.records
    spaces = _label_spaces(records)
    out: list[Example] = []
    seen: Counter[str] = Counter()
    first_line: dict[str, int | None] = {}
    dupes: list[str] = []
    outside: Counter[str] = Counter()
    file = str(p.path)
    for r in records:
        ex = Example("", 0, r.ordinal, p.role, r.source_id, r.task, r.definition, r.input, r.output,
                     r.label_space if r.label_space is not None else spaces.get(r.task), file, r.line, r.raw)
        base = make_uid(p.role, r.task, r.source_id, ex.content_sha256)
        seen[base] += 1
        if seen[base] == 1:
            ex.uid = base
            first_line[base] = r.line
        else:
            # deterministic: the n-th occurrence in file order gets '-n'
            ex.uid = f"{base}-{seen[base]}"
            what = f"id '{printable(r.source_id, 40)}'" if r.source_id is not None else "identical record"
            dupes.append(f"{what} at {_where(r)} repeats {_where_line(first_line[base], r)}")
        if ex.label_space is not None and r.output not in ex.label_space:
            outside[r.task] += 1
        out.append(ex)
    if dupes:
        more = f" (and {len(dupes) - 3} more)" if len(dupes) > 3 else ""
        warnings.append(f"{file}: {len(dupes)} duplicate record(s): {'; '.join(dupes[:3])}{more}; "
                        "the repeats get uids with a -2, -3, ... suffix")
    for task, n in sorted(outside.items()):
        warnings.append(f"{file}: {n} record(s) of task '{printable(task)}' have an output outside "
                        "their label space")
    return out


def _where(r: Record) -> str:
    return f"line {r.line}" if r.line is not None else f"row {r.ordinal + 1}"


def _where_line(line: int | None, r: Record) -> str:
    return f"line {line}" if line is not None else "an earlier row"


def _label_spaces(records: list[Record]) -> dict[str, list[str] | None]:
    """Per task: inferred from its outputs when none of its records carries a label space."""
    outputs: dict[str, list[str]] = defaultdict(list)
    given: set[str] = set()
    for r in records:
        outputs[r.task].append(r.output)
        if r.label_space is not None:
            given.add(r.task)
    return {task: infer_label_space(outs) for task, outs in outputs.items() if task not in given}


def _same(row: sqlite3.Row, p: _Prepared) -> bool:
    old = json.loads(row["options"])
    keys = ("encoding", "column_map", "lenient", "max_record_bytes")
    return (row["sha256"] == p.result.sha256 and row["format"] == p.result.format
            and all(old.get(k) == p.options.get(k) for k in keys))


def _store(ws: Workspace, conn: sqlite3.Connection, p: _Prepared, replace: bool, warnings: list[str],
           progress: ProgressFn, token: CancelToken | None) -> DatasetReport:
    tasks = sorted({e.task for e in p.examples})
    rep = DatasetReport(p.role, str(p.path), p.result.format, len(p.examples), tasks, "new",
                        len(p.result.skipped))
    if p.role == "train":
        old = conn.execute("SELECT * FROM datasets WHERE role = 'train'").fetchone()
    else:
        old = conn.execute("SELECT * FROM datasets WHERE role = 'eval' AND path = ?", (str(p.path),)).fetchone()
    if old is not None:
        if _same(old, p):
            rep.status, rep.dataset_id = "unchanged", old["id"]
            return rep
        if p.role == "train" and not replace:
            raise UserError(
                f"this workspace already holds the training set {old['path']} (sha256 {old['sha256'][:12]}); "
                f"{p.path} differs. Use a new --workspace, or --replace to swap the training data "
                "(its scores and rankings are dropped)"
            )
        _drop_dataset(conn, old, warnings)
        rep.status = "replaced"
    if p.role == "eval":
        clash = conn.execute(
            f"SELECT DISTINCT task, source_file FROM examples WHERE role = 'eval' AND task IN "
            f"({','.join('?' * len(tasks))}) LIMIT 1", tasks).fetchone()
        if clash is not None:
            raise UserError(f"evaluation task '{printable(clash[0])}' is already in this workspace "
                            f"(from {clash[1]}); each task must come from one file")
    cur = conn.execute(
        "INSERT INTO datasets (role, path, format, sha256, n_records, options, layout, ingested_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (p.role, str(p.path), p.result.format, p.result.sha256, len(p.examples),
         json.dumps(p.options, sort_keys=True), json.dumps(p.result.layout, ensure_ascii=False), utc_now()),
    )
    rep.dataset_id = cur.lastrowid
    label_json = LabelSpaceJSON()
    sql = f"INSERT INTO examples ({', '.join(EXAMPLE_COLUMNS)}) VALUES ({', '.join('?' * len(EXAMPLE_COLUMNS))})"
    with Stage(progress, f"store {p.role}", len(p.examples), token) as stage:
        for i in range(0, len(p.examples), _INSERT_CHUNK):
            chunk = p.examples[i:i + _INSERT_CHUNK]
            for ex in chunk:
                ex.dataset_id = rep.dataset_id
            conn.executemany(sql, [ex.row(label_json) for ex in chunk])
            stage.advance(len(chunk))
    if p.role == "eval":
        for task in tasks:
            register_query_set(ws, task, ORIGINAL, original_rows(ws, task, conn=conn),
                               {"source": str(p.path)}, conn=conn)
    return rep


def _drop_dataset(conn: sqlite3.Connection, old: sqlite3.Row, warnings: list[str]) -> None:
    if old["role"] == "train":
        n = conn.execute("SELECT COUNT(*) FROM decisions").fetchone()[0]
        if n:
            raise UserError(f"this workspace holds {n} review decision(s) on its training data, which the "
                            "audit trail keeps; start a new --workspace instead of --replace")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, col in _DERIVED_BY_UID:
            if table in tables:
                conn.execute(f"DELETE FROM {table} WHERE {col} IN "
                             "(SELECT uid FROM examples WHERE dataset_id = ?)", (old["id"],))
        warnings.append(f"replaced the training set {old['path']}: its scores and rankings were dropped")
    else:
        for (task,) in conn.execute("SELECT DISTINCT task FROM examples WHERE dataset_id = ?", (old["id"],)):
            delete_query_sets(conn, task)
        warnings.append(f"{old['path']} changed since it was ingested: its evaluation queries were replaced")
    conn.execute("DELETE FROM examples WHERE dataset_id = ?", (old["id"],))
    conn.execute("DELETE FROM datasets WHERE id = ?", (old["id"],))


def train_dataset(ws: Workspace) -> sqlite3.Row | None:
    """The workspace's training dataset row (its ``sha256`` identifies the training data)."""
    return ws.conn.execute("SELECT * FROM datasets WHERE role = 'train'").fetchone()
