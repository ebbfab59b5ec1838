"""The tamper-evident audit log: a hash chain of canonical-JSON records.

Every record holds ``seq`` (1, 2, ...), ``prev_hash`` (the previous record's ``hash``, or
64 zeros for the first) and ``hash = sha256(canonical JSON of the record without "hash")``.
Canonical JSON is sorted keys, no spaces, UTF-8 (not ASCII-escaped), so any tool can
recompute a hash from the bytes alone.

The ``audit_log`` table is the source of truth; ``audit.jsonl`` in the workspace mirrors it,
one record per line, exactly the bytes stored in ``audit_log.record``. Records are appended
inside the caller's transaction, so a decision and its record commit together; the mirror is
brought up to date after the commit (``sync_mirror``) and repairs itself when it lags.

A chain cannot reveal that its tail was cut off; the sign-off signs the head (record count
and head hash) for that.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import __version__
from engine.atomic import append_durably, atomic_write_bytes, fsync_dir
from engine.hashing import canonical_json as canonical_json  # re-exported: verify/export/signing use audit.*
from engine.hashing import sha256_file as sha256_file
from engine.hashing import sha256_hex as sha256_bytes
from engine.workspace import Workspace, utc_now

GENESIS_HASH = "0" * 64
MIRROR_NAME = "audit.jsonl"
RECORD_VERSION = 1
TOP_TASKS = 3  # evaluation tasks kept as evidence, by |influence|


# -- canonical form and hashes ---------------------------------------------------------------
def compute_hash(record: dict[str, Any]) -> str:
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical_json(body)).hexdigest()


# -- appending -------------------------------------------------------------------------------
def head(conn: sqlite3.Connection) -> tuple[int, str]:
    """(number of records, hash of the last one); (0, GENESIS_HASH) for an empty log."""
    row = conn.execute("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1").fetchone()
    return (0, GENESIS_HASH) if row is None else (int(row[0]), str(row[1]))


def append_record(
    conn: sqlite3.Connection, action: str, fields: dict[str, Any], ts: str | None = None
) -> dict[str, Any]:
    """Append one record. Call inside a ``BEGIN IMMEDIATE`` transaction: the write lock is what
    keeps two writers from both extending the same head."""
    seq, prev = head(conn)
    record: dict[str, Any] = {
        **fields,
        "v": RECORD_VERSION,
        "seq": seq + 1,
        "ts": ts or utc_now(),
        "action": action,
        "prev_hash": prev,
    }
    record["hash"] = hashlib.sha256(canonical_json(record)).hexdigest()
    conn.execute(
        "INSERT INTO audit_log (seq, ts, action, record, prev_hash, hash) VALUES (?, ?, ?, ?, ?, ?)",
        (record["seq"], record["ts"], action, canonical_json(record).decode("utf-8"), prev, record["hash"]),
    )
    return record


def db_records(conn: sqlite3.Connection, after_seq: int = 0) -> Iterator[tuple[int, str]]:
    yield from conn.execute(
        "SELECT seq, record FROM audit_log WHERE seq > ? ORDER BY seq", (after_seq,)
    )


# -- evidence and provenance (what the analyst saw, frozen into the record) -------------------
def latest_scan(conn: sqlite3.Connection) -> sqlite3.Row | None:
    return conn.execute(
        "SELECT * FROM scan_runs WHERE status = 'complete' "
        "ORDER BY completed_at DESC, created_at DESC LIMIT 1"
    ).fetchone()


def provenance(conn: sqlite3.Connection, dataset_id: int | None = None) -> dict[str, Any]:
    scan = latest_scan(conn)
    if dataset_id is None:
        hashes = [r[0] for r in conn.execute("SELECT sha256 FROM datasets WHERE role = 'train' ORDER BY id")]
        dataset_sha = hashes[0] if len(hashes) == 1 else (",".join(hashes) or None)
    else:
        row = conn.execute("SELECT sha256 FROM datasets WHERE id = ?", (dataset_id,)).fetchone()
        dataset_sha = row[0] if row else None
    settings_sha = None
    if scan is not None:
        settings_sha = sha256_bytes(canonical_json(json.loads(scan["settings"] or "{}")))
    detector = conn.execute("SELECT value FROM meta WHERE key = 'default_detector'").fetchone()
    return {
        "dataset_sha256": dataset_sha,
        "model_fingerprint": scan["model_fingerprint"] if scan is not None else None,
        "scan_run": scan["run_key"] if scan is not None else None,
        "settings_sha256": settings_sha,
        "detector": detector[0] if detector else None,
        "tool_version": __version__,
    }


class EvidenceReader:
    """Reads an item's scores with prepared lookups (a bulk action reads thousands)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.detectors = [r[0] for r in conn.execute("SELECT detector FROM detector_runs ORDER BY detector")]
        scan = latest_scan(conn)
        self.run_key = scan["run_key"] if scan is not None else None
        self.query_sets = [r[0] for r in conn.execute("SELECT id FROM query_sets ORDER BY id")]

    def __call__(self, uid: str) -> dict[str, Any]:
        detectors: dict[str, Any] = {}
        if self.detectors:
            marks = ",".join("?" * len(self.detectors))
            for r in self.conn.execute(
                f"SELECT detector, score, rank, flagged FROM detector_scores "
                f"WHERE detector IN ({marks}) AND uid = ?",
                (*self.detectors, uid),
            ):
                detectors[r[0]] = {"score": r[1], "rank": r[2], "flagged": bool(r[3])}
        return {"detectors": detectors, "top_tasks": self._top_tasks(uid)}

    def _top_tasks(self, uid: str) -> list[dict[str, Any]]:
        if self.run_key is None or not self.query_sets:
            return []
        marks = ",".join("?" * len(self.query_sets))
        per_task: dict[str, dict[str, float]] = {}
        for qs, score in self.conn.execute(
            f"SELECT query_set_id, score FROM influence "
            f"WHERE run_key = ? AND query_set_id IN ({marks}) AND uid = ?",
            (self.run_key, *self.query_sets, uid),
        ):
            task, _, variant = str(qs).partition("::")
            per_task.setdefault(task, {})[variant or "original"] = score
        def strength(scores: dict[str, float]) -> float:
            s = scores.get("original")
            return abs(s) if s is not None else max(abs(v) for v in scores.values())
        ranked = sorted(per_task.items(), key=lambda kv: (-strength(kv[1]), kv[0]))[:TOP_TASKS]
        return [{"task": t, "influence": dict(sorted(v.items()))} for t, v in ranked]


# -- the JSONL mirror ------------------------------------------------------------------------
def mirror_path(ws: Workspace) -> Path:
    return ws.path / MIRROR_NAME


@contextlib.contextmanager
def _mirror_lock(path: Path) -> Iterator[None]:
    # Two processes may commit decisions back to back; the lock keeps their mirror appends
    # from interleaving or duplicating lines.
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX
        yield
        return
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock.fileno(), fcntl.LOCK_UN)


def _last_line(path: Path) -> tuple[bytes | None, int]:
    """The last complete line and the file size up to its end (a torn final line is ignored)."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        pos, buf = size, b""
        while pos > 0:
            step = min(1 << 16, pos)
            pos -= step
            fh.seek(pos)
            buf = fh.read(step) + buf
            end = buf.rfind(b"\n")
            if end < 0:
                continue
            start = buf.rfind(b"\n", 0, end)
            if start >= 0 or pos == 0:
                line = buf[start + 1 : end]
                return line, pos + end + 1
        return None, 0


def sync_mirror(ws: Workspace, conn: sqlite3.Connection | None = None) -> None:
    """Make ``audit.jsonl`` equal the DB chain, appending what it lacks.

    Only the last line is compared (O(1) per decision); full comparison is verify's job. A
    mirror whose tail does not match the DB is kept aside as ``audit.jsonl.diverged-N`` and
    rewritten from the DB, which is the source of truth.
    """
    conn = conn or ws.conn
    path = mirror_path(ws)
    with _mirror_lock(path):
        after = 0
        if path.exists():
            line, good_size = _last_line(path)
            if line is not None:
                try:
                    after = int(json.loads(line)["seq"])
                    row = conn.execute("SELECT record FROM audit_log WHERE seq = ?", (after,)).fetchone()
                    ok = row is not None and row[0].encode("utf-8") == line
                except (ValueError, KeyError, TypeError):
                    ok = False
                if not ok:
                    _rewrite_mirror(path, conn)
                    return
            if good_size != path.stat().st_size:
                # A torn final line from a crash mid-append: drop it, the DB has the record.
                with open(path, "r+b") as fh:
                    fh.truncate(good_size)
                    os.fsync(fh.fileno())
        lines = [rec.encode("utf-8") + b"\n" for _, rec in db_records(conn, after)]
        if lines:
            append_durably(path, b"".join(lines))


def _rewrite_mirror(path: Path, conn: sqlite3.Connection) -> None:
    n = 1
    while path.with_name(f"{path.name}.diverged-{n}").exists():
        n += 1
    os.replace(path, path.with_name(f"{path.name}.diverged-{n}"))
    fsync_dir(path.parent)
    atomic_write_bytes(path, b"".join(rec.encode("utf-8") + b"\n" for _, rec in db_records(conn)))


# -- checking a chain ------------------------------------------------------------------------
@dataclass(frozen=True)
class ChainProblem:
    position: int  # 1-based line / row where the problem shows
    seq: int | None  # the seq that record claims, if readable
    message: str

    def __str__(self) -> str:
        return f"record {self.position}: {self.message}"


def parse_lines(data: bytes) -> tuple[list[dict[str, Any]], ChainProblem | None]:
    """Parse a JSONL audit file; stops at the first unreadable line."""
    records: list[dict[str, Any]] = []
    if data and not data.endswith(b"\n"):
        return records, ChainProblem(data.count(b"\n") + 1, None, "torn final line (no newline)")
    for i, line in enumerate(data.splitlines(), start=1):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            return records, ChainProblem(i, None, f"not a JSON record ({exc})")
        if canonical_json(rec) != line:
            return records, ChainProblem(i, rec.get("seq"), "not in canonical form (edited)")
        records.append(rec)
    return records, None


def check_chain(records: list[dict[str, Any]]) -> ChainProblem | None:
    """The first record that breaks the chain, or None when every link holds."""
    prev = GENESIS_HASH
    for pos, rec in enumerate(records, start=1):
        seq = rec.get("seq")
        if rec.get("hash") != compute_hash(rec):
            return ChainProblem(pos, seq, f"seq {seq}: content does not match its hash (edited)")
        if seq != pos:
            what = "missing or reordered" if isinstance(seq, int) and seq > pos else "duplicated or reordered"
            return ChainProblem(pos, seq, f"expected seq {pos}, found seq {seq} (record {what})")
        if rec.get("prev_hash") != prev:
            return ChainProblem(pos, seq, f"seq {seq}: prev_hash does not match record {pos - 1} (chain broken)")
        prev = rec["hash"]
    return None
