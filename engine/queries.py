"""Query sets: the evaluation queries influence is measured against, one set per (task, variant).

Ingest registers each evaluation task's untouched queries as variant ``original``; detection
registers transformed or triggered variants of them through the same function. A set's
``sha256`` covers exactly its queries, so a cached score keyed on (query set id, sha256) stays
valid while the queries do and is recomputed once they change.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.hashing import sha256_hex
from engine.records import dump_label_space, load_label_space
from engine.workspace import Workspace, utc_now

ORIGINAL = "original"
_SEP = "::"


@dataclass(frozen=True)
class Query:
    idx: int
    source_uid: str
    definition: str
    input: str
    output: str
    label_space: list[str] | None
    changed: bool


def query_set_id(task: str, variant: str) -> str:
    return f"{task}{_SEP}{variant}"


def _normalise(rows: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str, str, list[str] | None, bool]]:
    out = []
    for i, r in enumerate(rows):
        try:
            label_space = r.get("label_space")
            if isinstance(label_space, str):
                label_space = load_label_space(label_space)
            out.append((str(r["source_uid"]), str(r["definition"]), str(r["input"]), str(r["output"]),
                        None if label_space is None else [str(x) for x in label_space],
                        bool(r.get("changed", False))))
        except KeyError as exc:
            raise ValueError(f"query row {i} lacks {exc.args[0]!r}") from None
    return out


def content_sha256(rows: Sequence[tuple[str, str, str, str, list[str] | None, bool]]) -> str:
    """Hash of the queries in order; params are not part of it (same queries, same scores)."""
    payload = json.dumps([list(r) for r in rows], ensure_ascii=False, separators=(",", ":"))
    return sha256_hex(payload.encode("utf-8"))


def register_query_set(ws: Workspace, task: str, variant: str, rows: Iterable[Mapping[str, Any]],
                       params: Mapping[str, Any] | None = None, *,
                       conn: sqlite3.Connection | None = None) -> str:
    """Create or update the query set ``'<task>::<variant>'`` and return its id.

    ``rows``: dicts with ``source_uid`` (the evaluation example it derives from), ``definition``,
    ``input``, ``output`` (the answer the measurement scores), ``label_space`` (list, JSON text
    or None) and ``changed`` (True when a transform altered the text). Identical content is a
    no-op (params, created_at and any scores keyed on the sha stay); different content replaces
    the set's queries and its sha. Runs in its own transaction unless ``conn`` is already in one.
    """
    if not task or not variant or _SEP in variant:
        raise ValueError(f"bad query set name: task={task!r} variant={variant!r}")
    norm = _normalise(rows)
    if not norm:
        raise ValueError(f"query set {query_set_id(task, variant)!r} has no queries")
    qs_id, sha = query_set_id(task, variant), content_sha256(norm)
    conn = conn or ws.conn
    if conn.in_transaction:
        _store(conn, qs_id, task, variant, norm, sha, params)
    else:
        with ws.transaction(conn):
            _store(conn, qs_id, task, variant, norm, sha, params)
    return qs_id


def _store(conn: sqlite3.Connection, qs_id: str, task: str, variant: str, norm: list[tuple],
           sha: str, params: Mapping[str, Any] | None) -> None:
    old = conn.execute("SELECT sha256 FROM query_sets WHERE id = ?", (qs_id,)).fetchone()
    if old is not None and old[0] == sha:
        return
    conn.execute("DELETE FROM query_sets WHERE id = ?", (qs_id,))  # cascades to its queries
    conn.execute(
        "INSERT INTO query_sets (id, task, variant, params, sha256, n_queries, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        (qs_id, task, variant, json.dumps(dict(params or {}), sort_keys=True), sha, len(norm), utc_now()),
    )
    conn.executemany(
        "INSERT INTO queries (query_set_id, idx, source_uid, definition, input, output, label_space, changed) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(qs_id, i, u, d, x, y, dump_label_space(ls), int(ch)) for i, (u, d, x, y, ls, ch) in enumerate(norm)],
    )


def delete_query_sets(conn: sqlite3.Connection, task: str) -> int:
    """Drop every variant of a task's query sets (when its evaluation data is replaced)."""
    cur = conn.execute("DELETE FROM query_sets WHERE task = ?", (task,))
    return cur.rowcount


def list_query_sets(ws: Workspace, task: str | None = None) -> list[dict[str, Any]]:
    sql = "SELECT id, task, variant, params, sha256, n_queries, created_at FROM query_sets"
    args: tuple[str, ...] = ()
    if task is not None:
        sql, args = sql + " WHERE task = ?", (task,)
    rows = ws.conn.execute(sql + " ORDER BY task, variant", args).fetchall()
    return [{**dict(r), "params": json.loads(r["params"])} for r in rows]


def load_queries(ws: Workspace, qs_id: str) -> list[Query]:
    rows = ws.conn.execute(
        "SELECT idx, source_uid, definition, input, output, label_space, changed FROM queries "
        "WHERE query_set_id = ? ORDER BY idx", (qs_id,)
    ).fetchall()
    return [Query(r[0], r[1], r[2], r[3], r[4], load_label_space(r[5]), bool(r[6])) for r in rows]


def original_rows(ws: Workspace, task: str, *, conn: sqlite3.Connection | None = None) -> list[dict[str, Any]]:
    """An evaluation task's examples as query rows (what the 'original' set is made of)."""
    rows = (conn or ws.conn).execute(
        "SELECT uid, definition, input, output, label_space FROM examples "
        "WHERE role = 'eval' AND task = ? ORDER BY dataset_id, ordinal", (task,)
    ).fetchall()
    return [{"source_uid": r[0], "definition": r[1], "input": r[2], "output": r[3], "label_space": r[4],
             "changed": False} for r in rows]
