"""The analyst's decisions: keep / quarantine / remove, undo, and the current status of items.

``decide`` and ``undo`` each run one ``BEGIN IMMEDIATE`` transaction that updates
``review_status``, inserts ``decisions`` rows and appends the audit records; the workspace
connection uses ``synchronous = FULL``, so once they return the decision survives a crash or
a SIGKILL. History is never rewritten: undo appends ``revert`` decisions.

A ``revert`` decision carries the reason and note of the status it restores, so replaying
the decisions in order (``replay``) rebuilds the current state from the log alone.
"""

from __future__ import annotations

import getpass
import os
import sqlite3
import uuid
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from engine import audit
from engine.errors import UserError
from engine.workspace import Workspace, utc_now

STATUSES = ("undecided", "keep", "quarantine", "remove")
ACTIONS = ("keep", "quarantine", "remove")  # what an analyst can choose; "revert" comes from undo

# Reason codes shown in the UI and accepted by ``poison-tui decide --reason``.
REASON_CODES: dict[str, str] = {
    "trigger_phrase": "contains a suspected trigger phrase",
    "label_flip": "the label contradicts the content",
    "sentiment_mismatch": "the sentiment of the input disagrees with the label",
    "duplicate": "duplicate or near-duplicate of another example",
    "pii": "contains personal data",
    "other": "other (see note)",
}


def default_actor() -> str:
    env = os.environ.get("POISON_TUI_ACTOR")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry in some containers
        return "unknown"


@dataclass(frozen=True)
class Decision:
    seq: int
    ts: str
    actor: str
    uid: str
    action: str
    prior_status: str
    new_status: str
    reason: str | None
    note: str | None
    bulk_id: str | None
    reverts_seq: int | None


def _decision(row: sqlite3.Row) -> Decision:
    return Decision(*(row[k] for k in Decision.__dataclass_fields__))


def _validate(action: str, reason: str | None) -> None:
    if action not in ACTIONS:
        raise UserError(f"unknown action {action!r}; choose one of {', '.join(ACTIONS)}")
    if reason is not None and reason not in REASON_CODES:
        raise UserError(f"unknown reason {reason!r}; choose one of {', '.join(REASON_CODES)}")


def _check_uids(conn: sqlite3.Connection, uids: list[str]) -> dict[str, sqlite3.Row]:
    found: dict[str, sqlite3.Row] = {}
    for start in range(0, len(uids), 500):
        chunk = uids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        for row in conn.execute(
            f"SELECT uid, dataset_id, ordinal, content_sha256, role FROM examples WHERE uid IN ({marks})", chunk
        ):
            found[row["uid"]] = row
    for uid in uids:
        row = found.get(uid)
        if row is None:
            raise UserError(f"no training example with uid {uid!r} in this workspace")
        if row["role"] != "train":
            raise UserError(f"{uid!r} is an evaluation query; only training examples can be decided")
    return found


def _status_row(conn: sqlite3.Connection, uid: str) -> tuple[str, str | None, str | None]:
    row = conn.execute("SELECT status, reason, note FROM review_status WHERE uid = ?", (uid,)).fetchone()
    return ("undecided", None, None) if row is None else (row[0], row[1], row[2])


def _set_status(
    conn: sqlite3.Connection, uid: str, status: str, reason: str | None, note: str | None, seq: int
) -> None:
    conn.execute(
        "INSERT INTO review_status (uid, status, reason, note, decision_seq) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT(uid) DO UPDATE SET status = excluded.status, reason = excluded.reason, "
        "note = excluded.note, decision_seq = excluded.decision_seq",
        (uid, status, reason, note, seq),
    )


class _Recorder:
    """Writes decision rows and their audit records inside one open transaction."""

    def __init__(self, conn: sqlite3.Connection, actor: str) -> None:
        self.conn, self.actor, self.ts = conn, actor, utc_now()
        self.evidence = audit.EvidenceReader(conn)
        self._provenance: dict[int, dict[str, Any]] = {}

    def provenance(self, dataset_id: int) -> dict[str, Any]:
        if dataset_id not in self._provenance:
            self._provenance[dataset_id] = audit.provenance(self.conn, dataset_id)
        return self._provenance[dataset_id]

    def record(
        self,
        example: sqlite3.Row,
        action: str,
        new_status: str,
        reason: str | None,
        note: str | None,
        bulk_id: str | None = None,
        reverts_seq: int | None = None,
    ) -> int:
        uid = example["uid"]
        prior, _, _ = _status_row(self.conn, uid)
        cur = self.conn.execute(
            "INSERT INTO decisions (ts, actor, uid, action, prior_status, new_status, reason, note, "
            "bulk_id, reverts_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (self.ts, self.actor, uid, action, prior, new_status, reason, note, bulk_id, reverts_seq),
        )
        seq = int(cur.lastrowid or 0)
        _set_status(self.conn, uid, new_status, reason, note, seq)
        audit.append_record(
            self.conn,
            action,
            {
                "actor": self.actor,
                "decision_seq": seq,
                "uid": uid,
                "item_sha256": example["content_sha256"],
                "item_ordinal": example["ordinal"],  # position in its dataset: replay away from the DB
                "prior_status": prior,
                "new_status": new_status,
                "reason": reason,
                "note": note,
                "bulk_id": bulk_id,
                "reverts_seq": reverts_seq,
                "evidence": self.evidence(uid),
                "provenance": self.provenance(example["dataset_id"]),
            },
            ts=self.ts,
        )
        return seq

    def bulk(self, bulk_id: str, action: str, count: int, reason: str | None, note: str | None,
             reverts_bulk_id: str | None = None) -> None:
        audit.append_record(
            self.conn,
            "bulk",
            {
                "actor": self.actor,
                "bulk_id": bulk_id,
                "bulk_action": action,
                "count": count,
                "reason": reason,
                "note": note,
                "reverts_bulk_id": reverts_bulk_id,
                "provenance": audit.provenance(self.conn),
            },
            ts=self.ts,
        )


def decide(
    ws: Workspace,
    uids: Iterable[str],
    action: str,
    reason: str | None = None,
    note: str | None = None,
    actor: str | None = None,
    bulk: bool = False,
) -> list[int]:
    """Record ``action`` for every uid; returns the new decision seqs, in order.

    Durable on return. ``bulk=True`` groups the decisions under one bulk id (undone together)
    and adds a ``bulk`` audit record naming the count.
    """
    _validate(action, reason)
    uids = list(dict.fromkeys(uids))  # a uid selected twice is decided once
    if not uids:
        return []
    note = note or None
    actor = actor or default_actor()
    conn = ws.conn
    with ws.transaction(conn):
        examples = _check_uids(conn, uids)
        rec = _Recorder(conn, actor)
        bulk_id = uuid.uuid4().hex if bulk else None
        if bulk_id is not None:
            rec.bulk(bulk_id, action, len(uids), reason, note)
        seqs = [rec.record(examples[u], action, action, reason, note, bulk_id) for u in uids]
    _mirror(ws, conn)
    return seqs


_NOT_REVERTED = (
    "action != 'revert' AND seq NOT IN "
    "(SELECT reverts_seq FROM decisions WHERE action = 'revert' AND reverts_seq IS NOT NULL)"
)


def undo(ws: Workspace, actor: str | None = None) -> list[int]:
    """Revert the most recent decision not yet reverted (a whole bulk action at once).

    Returns the seqs of the ``revert`` decisions appended; [] when there is nothing to undo.
    """
    actor = actor or default_actor()
    conn = ws.conn
    with ws.transaction(conn):
        last = conn.execute(
            f"SELECT * FROM decisions WHERE {_NOT_REVERTED} ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        if last is None:
            return []
        if last["bulk_id"] is not None:
            targets = conn.execute(
                f"SELECT * FROM decisions WHERE bulk_id = ? AND {_NOT_REVERTED} ORDER BY seq DESC",
                (last["bulk_id"],),
            ).fetchall()
        else:
            targets = [last]
        uids = [t["uid"] for t in targets]
        examples = _check_uids(conn, list(dict.fromkeys(uids)))
        rec = _Recorder(conn, actor)
        revert_bulk = uuid.uuid4().hex if last["bulk_id"] is not None else None
        if revert_bulk is not None:
            rec.bulk(revert_bulk, "revert", len(targets), None, None, reverts_bulk_id=last["bulk_id"])
        seqs = []
        for t in targets:
            reason, note = _restored_annotation(conn, t)
            seqs.append(
                rec.record(examples[t["uid"]], "revert", t["prior_status"], reason, note,
                           revert_bulk, reverts_seq=t["seq"])
            )
    _mirror(ws, conn)
    return seqs


def _mirror(ws: Workspace, conn: sqlite3.Connection) -> None:
    # The decision is committed (the DB is the source of truth); a mirror that cannot be
    # written now (disk full, permissions) is brought level by the next write, so the
    # analyst's action must not fail for it.
    try:
        audit.sync_mirror(ws, conn)
    except OSError as exc:
        warnings.warn(f"audit.jsonl not updated ({exc}); it is repaired on the next decision", stacklevel=3)


def _restored_annotation(conn: sqlite3.Connection, target: sqlite3.Row) -> tuple[str | None, str | None]:
    """Reason and note that went with the status a revert restores."""
    if target["prior_status"] == "undecided":
        return None, None
    prev = conn.execute(
        "SELECT new_status, reason, note FROM decisions WHERE uid = ? AND seq < ? "
        "ORDER BY seq DESC LIMIT 1",
        (target["uid"], target["seq"]),
    ).fetchone()
    if prev is None or prev["new_status"] != target["prior_status"]:
        return None, None
    return prev["reason"], prev["note"]


# -- reading ---------------------------------------------------------------------------------
def status_counts(ws: Workspace, conn: sqlite3.Connection | None = None) -> dict[str, int]:
    """Training examples per status; examples never decided count as undecided."""
    conn = conn or ws.conn
    counts = dict.fromkeys(STATUSES, 0)
    total = conn.execute("SELECT COUNT(*) FROM examples WHERE role = 'train'").fetchone()[0]
    for status, n in conn.execute("SELECT status, COUNT(*) FROM review_status GROUP BY status"):
        counts[status] = n
    counts["undecided"] = total - sum(n for s, n in counts.items() if s != "undecided")
    return counts


def current_status(ws: Workspace, uid: str) -> str:
    return _status_row(ws.conn, uid)[0]


def history(ws: Workspace, uid: str) -> list[Decision]:
    rows = ws.conn.execute("SELECT * FROM decisions WHERE uid = ? ORDER BY seq", (uid,)).fetchall()
    return [_decision(r) for r in rows]


def all_decisions(ws: Workspace) -> list[Decision]:
    return [_decision(r) for r in ws.conn.execute("SELECT * FROM decisions ORDER BY seq")]


@dataclass(frozen=True)
class ItemState:
    status: str
    reason: str | None
    note: str | None


def replay(records: Iterable[dict[str, Any]]) -> dict[str, ItemState]:
    """Current state of every decided item, rebuilt from audit records (other actions ignored)."""
    state: dict[str, ItemState] = {}
    for rec in records:
        if rec.get("action") in ("keep", "quarantine", "remove", "revert"):
            state[rec["uid"]] = ItemState(rec["new_status"], rec.get("reason"), rec.get("note"))
    return state


def current_states(conn: sqlite3.Connection) -> Iterator[tuple[str, ItemState]]:
    for uid, status, reason, note in conn.execute(
        "SELECT uid, status, reason, note FROM review_status ORDER BY uid"
    ):
        yield uid, ItemState(status, reason, note)
