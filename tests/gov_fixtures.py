"""Workspaces for the governance tests (decisions, audit, export, sign-off, verify).

``jsonl_workspace`` fills a real workspace the way ingest would for a JSONL file (one raw
line per record), plus a complete scan run, influence rows and detector scores, so audit
records carry real evidence and provenance.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from engine.formats import read_dataset
from engine.workspace import Workspace, utc_now

TASKS = ("sst2", "imdb")


def train_lines(n: int) -> list[bytes]:
    lines = []
    for i in range(n):
        rec = {
            "id": f"r{i}",
            "task": TASKS[i % 2],
            "definition": "Classify the sentiment of the review.",
            # non-ASCII and a JSON escape: export must keep the raw bytes, not re-serialise
            "input": f"review n\u00b0{i}: {'great' if i % 3 else 'awful'} film \\u00e9",
            "output": "positive" if i % 3 else "negative",
        }
        lines.append(json.dumps(rec, ensure_ascii=False).encode("utf-8"))
    return lines


def add_dataset(ws: Workspace, src: Path, uids: list[str] | None = None, fmt: str = "auto") -> list[str]:
    """Read ``src`` with the real format readers and store it as ingest does; returns the uids."""
    result = read_dataset(src, fmt)
    uids = uids or [f"{src.name}:{r.ordinal}" for r in result.records]
    with ws.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO datasets (role, path, format, sha256, n_records, layout, ingested_at) "
            "VALUES ('train', ?, ?, ?, ?, ?, ?)",
            (str(src), result.format, hashlib.sha256(src.read_bytes()).hexdigest() if src.is_file()
             else "dir-" + src.name, len(result.records), json.dumps(result.layout), utc_now()),
        )
        for uid, r in zip(uids, result.records, strict=True):
            conn.execute(
                "INSERT INTO examples (uid, dataset_id, ordinal, role, source_id, task, definition, "
                "input, output, label_space, source_file, source_line, raw, content_sha256) "
                "VALUES (?, ?, ?, 'train', ?, ?, ?, ?, ?, NULL, ?, ?, ?, ?)",
                (uid, cur.lastrowid, r.ordinal, r.source_id, r.task, r.definition, r.input, r.output,
                 str(src), r.line, r.raw, hashlib.sha256(r.raw).hexdigest()),
            )
    return uids


def jsonl_workspace(tmp: Path, n: int = 12, name: str = "ws") -> tuple[Workspace, Path, list[str]]:
    """(workspace, input file, uids in input order)."""
    lines = train_lines(n)
    src = tmp / "train.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    ws = Workspace.create(tmp / name)
    uids = [f"u{i:04d}" for i in range(n)]
    add_dataset(ws, src, uids)
    with ws.transaction() as conn:
        conn.execute(
            "INSERT INTO scan_runs (run_key, model_fingerprint, train_sha256, settings, status, "
            "created_at, completed_at) VALUES ('run1', 'model-fp-1', 'x', '{\"damping\": 0.001}', "
            "'complete', ?, ?)",
            (utc_now(), utc_now()),
        )
        for t in TASKS:
            for variant in ("original", "negated"):
                conn.execute(
                    "INSERT INTO query_sets (id, task, variant, sha256, n_queries, created_at) "
                    "VALUES (?, ?, ?, 'q', 1, ?)",
                    (f"{t}::{variant}", t, variant, utc_now()),
                )
        conn.execute(
            "INSERT INTO detector_runs (detector, rule, n_scored, n_flagged, is_default, created_at) "
            "VALUES ('ekfac', 'top 2%', ?, 1, 1, ?)",
            (n, utc_now()),
        )
        for i, uid in enumerate(uids):
            conn.execute(
                "INSERT INTO detector_scores (detector, uid, score, rank, flagged) VALUES ('ekfac', ?, ?, ?, ?)",
                (uid, 1.0 / (i + 1), i + 1, int(i == 0)),
            )
            for j, t in enumerate(TASKS):
                conn.execute(
                    "INSERT INTO influence (run_key, query_set_id, query_set_sha256, uid, score) "
                    "VALUES ('run1', ?, 'q', ?, ?)",
                    (f"{t}::original", uid, (i + 1) * (j + 1) * 0.5),
                )
        ws.set_meta("default_detector", "ekfac", conn)
    return ws, src, uids
