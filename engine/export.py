"""Export: the cleaned dataset in the input's own format, the excluded records, a manifest.

An export directory is also the sign-off BUNDLE (engine.signing adds to it)::

    <out>/
      <input file name>     every record not excluded, byte for byte as it came in
      quarantine.jsonl      one canonical-JSON line per quarantined record (decision, reason, note,
      removed.jsonl         uid, position, sha256 and the record itself)
      manifest.json         hashes of the input and outputs, counts, settings, model, decisions head
      audit.jsonl           (sign-off) the audit chain up to the signed head
      signoff.dsse.json     (sign-off) DSSE envelope of an in-toto Statement over all of the above

The data files and the manifest hold no timestamps: the same decisions always give the same
bytes, which is what lets verify replay the audit log and compare bytes. The export itself is
an audit record (with the time and the output hashes).

Which records are excluded: ``remove`` and ``quarantine`` decisions, and with
``undecided="exclude"`` also the suspects the default detector flagged but nobody decided
(listed in quarantine.jsonl with decision ``undecided``, and by uid in the manifest).
"""

from __future__ import annotations

import base64
import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from engine import __version__, audit
from engine.atomic import atomic_write_bytes, remove_stale_temps
from engine.decisions import current_states, default_actor
from engine.errors import UserError
from engine.workspace import Workspace

MANIFEST = "manifest.json"
QUARANTINE = "quarantine.jsonl"
REMOVED = "removed.jsonl"
SIGNOFF_FILES = ("audit.jsonl", "signoff.dsse.json", "statement.json")  # stale once re-exported
EXPORT_FORMAT = "poison-tui-export/1"
DECISION_ACTIONS = ("keep", "quarantine", "remove", "revert", "bulk")
UNDECIDED_POLICIES = ("keep", "exclude")


@dataclass(frozen=True)
class ExportResult:
    out_dir: Path
    files: dict[str, str]  # file name -> sha256
    counts: dict[str, int]
    manifest: dict[str, Any]
    audit_seq: int  # seq of the export's audit record


class InputRecord(NamedTuple):  # a tuple: an export builds 50,000 of them
    uid: str
    ordinal: int
    line: int | None
    source_id: str | None
    raw: bytes
    sha256: str


def default_out_dir(ws: Workspace) -> Path:
    return ws.path / "exports" / "latest"


def output_names(datasets: list[dict[str, Any]]) -> dict[int, str]:
    """File name of each dataset's cleaned output: the input's own name (prefixed if two clash)."""
    names = [Path(d["path"]).name or f"dataset-{d['id']}" for d in datasets]
    reserved = {MANIFEST, QUARANTINE, REMOVED, *SIGNOFF_FILES}
    out = {}
    for d, name in zip(datasets, names, strict=True):
        if names.count(name) > 1 or name in reserved:
            name = f"{d['id']}-{name}"
        out[d["id"]] = name
    return out


def excluded_line(rec: InputRecord, source: str, decision: str, reason: str | None, note: str | None) -> bytes:
    entry: dict[str, Any] = {
        "uid": rec.uid,
        "source": source,
        "ordinal": rec.ordinal,
        "line": rec.line,
        "source_id": rec.source_id,
        "sha256": rec.sha256,
        "decision": decision,
        "reason": reason,
        "note": note,
    }
    try:
        entry["record"] = rec.raw.decode("utf-8")
    except UnicodeDecodeError:
        entry["record_base64"] = base64.b64encode(rec.raw).decode("ascii")
    return audit.canonical_json(entry) + b"\n"


def render_dataset(dataset: dict[str, Any], name: str, kept: list[InputRecord]) -> dict[str, bytes]:
    """The cleaned output's files, built by the format's own writer (engine.formats).

    One file for most formats; a ``datasets`` directory (``hf-disk``) gives ``name/<file>``
    entries, so every output is plain bytes that can be hashed and written atomically.
    """
    import io

    from engine.formats import write_records

    raws = [r.raw for r in kept]
    ordinals = [r.ordinal for r in kept]
    layout = dataset["layout"]
    if (json.loads(layout) if isinstance(layout, str) else layout).get("container") == "hf-disk":
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            target = Path(tmp) / "out"
            write_records(dataset, raws, target, ordinals=ordinals)
            return {f"{name}/{p.relative_to(target).as_posix()}": p.read_bytes()
                    for p in sorted(target.rglob("*")) if p.is_file()}
    buf = io.BytesIO()
    write_records(dataset, raws, buf, ordinals=ordinals)
    return {name: buf.getvalue()}


def build_outputs(
    datasets: list[dict[str, Any]],
    records: dict[int, list[InputRecord]],
    states: dict[str, tuple[str, str | None, str | None]],
    undecided_excluded: set[str],
) -> tuple[dict[str, bytes], dict[str, int]]:
    """Every data file of an export, from the input records and the final decisions.

    Pure: export calls it with the workspace's state, verify with the state replayed from the
    audit log, so both must give identical bytes.
    """
    names = {d["id"]: d["output"] for d in datasets}
    files: dict[str, bytes] = {}
    quarantine: list[bytes] = []
    removed: list[bytes] = []
    counts = {"keep": 0, "quarantine": 0, "remove": 0, "undecided": 0, "output_records": 0,
              "undecided_excluded": 0}
    for d in datasets:
        kept: list[InputRecord] = []
        for rec in records[d["id"]]:
            status, reason, note = states.get(rec.uid, ("undecided", None, None))
            counts[status] += 1
            if status == "remove":
                removed.append(excluded_line(rec, names[d["id"]], status, reason, note))
            elif status == "quarantine":
                quarantine.append(excluded_line(rec, names[d["id"]], status, reason, note))
            elif status == "undecided" and rec.uid in undecided_excluded:
                counts["undecided_excluded"] += 1
                quarantine.append(excluded_line(rec, names[d["id"]], "undecided", None, None))
            else:
                kept.append(rec)
        counts["output_records"] += len(kept)
        files.update(render_dataset(d, names[d["id"]], kept))
    files[QUARANTINE] = b"".join(quarantine)
    files[REMOVED] = b"".join(removed)
    return files, counts


# -- reading the workspace -------------------------------------------------------------------
def train_datasets(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM datasets WHERE role = 'train' ORDER BY id").fetchall()
    return [dict(r) for r in rows]


def input_records(conn: sqlite3.Connection, dataset_id: int) -> list[InputRecord]:
    cur = conn.cursor()
    cur.row_factory = None  # plain tuples: sqlite3.Row costs more than the read at 50,000 rows
    cur.execute(
        "SELECT uid, ordinal, source_line, source_id, raw, content_sha256 FROM examples "
        "WHERE dataset_id = ? ORDER BY ordinal",
        (dataset_id,),
    )
    return [InputRecord._make(r) for r in cur]


def flagged_undecided(conn: sqlite3.Connection) -> set[str]:
    detector = conn.execute("SELECT value FROM meta WHERE key = 'default_detector'").fetchone()
    if detector is None:
        return set()
    return {
        r[0]
        for r in conn.execute(
            "SELECT s.uid FROM detector_scores s JOIN examples e ON e.uid = s.uid "
            "LEFT JOIN review_status rs ON rs.uid = s.uid "
            "WHERE s.detector = ? AND s.flagged = 1 AND e.role = 'train' "
            "AND COALESCE(rs.status, 'undecided') = 'undecided'",
            (detector[0],),
        )
    }


def decisions_head(conn: sqlite3.Connection) -> dict[str, Any]:
    """The last audit record that changed decisions: the state an export reflects."""
    marks = ",".join("?" * len(DECISION_ACTIONS))
    row = conn.execute(
        f"SELECT seq, hash FROM audit_log WHERE action IN ({marks}) ORDER BY seq DESC LIMIT 1",
        DECISION_ACTIONS,
    ).fetchone()
    return {"seq": 0, "hash": audit.GENESIS_HASH} if row is None else {"seq": row[0], "hash": row[1]}


def _settings(conn: sqlite3.Connection) -> dict[str, Any]:
    scan = audit.latest_scan(conn)
    detectors = {
        r["detector"]: {"rule": r["rule"], "params": json.loads(r["params"] or "{}")}
        for r in conn.execute("SELECT detector, rule, params FROM detector_runs ORDER BY detector")
    }
    return {
        "scan": json.loads(scan["settings"]) if scan is not None else None,
        "detectors": detectors,
    }


def export(
    ws: Workspace,
    out_dir: Path | None = None,
    undecided: str = "keep",
    actor: str | None = None,
) -> ExportResult:
    """Write the export directory atomically, file by file (manifest last), and audit it."""
    if undecided not in UNDECIDED_POLICIES:
        raise UserError(f"--undecided must be one of {', '.join(UNDECIDED_POLICIES)}, not {undecided!r}")
    out_dir = Path(out_dir) if out_dir is not None else default_out_dir(ws)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"{out_dir}: exists and is not a directory")
    actor = actor or default_actor()
    conn = ws.conn
    # One read transaction: decisions, records and head come from the same snapshot.
    conn.execute("BEGIN")
    try:
        datasets = train_datasets(conn)
        if not datasets:
            raise UserError(f"{ws.path}: no training dataset ingested, nothing to export")
        for d, name in zip(datasets, output_names(datasets).values(), strict=True):
            d["output"] = name
        records = {d["id"]: input_records(conn, d["id"]) for d in datasets}
        states = {
            uid: (s.status, s.reason, s.note)
            for uid, s in current_states(conn)
        }
        excluded_undecided = flagged_undecided(conn) if undecided == "exclude" else set()
        head = decisions_head(conn)
        settings = _settings(conn)
        prov = audit.provenance(conn)
    finally:
        conn.execute("COMMIT")

    files, counts = build_outputs(datasets, records, states, excluded_undecided)
    manifest: dict[str, Any] = {
        "format": EXPORT_FORMAT,
        "tool_version": __version__,
        "inputs": [
            {
                "output": d["output"],
                "path": d["path"],
                "format": d["format"],
                "sha256": d["sha256"],
                "n_records": d["n_records"],
                # kept as the stored JSON text: key order matters to some writers (column order)
                "options": d["options"],
                "layout": d["layout"],
            }
            for d in datasets
        ],
        "outputs": {name: audit.sha256_bytes(data) for name, data in sorted(files.items())},
        "counts": counts,
        "undecided_policy": undecided,
        "undecided_excluded": [
            {"uid": r.uid, "input": i, "ordinal": r.ordinal}
            for i, d in enumerate(datasets) for r in records[d["id"]] if r.uid in excluded_undecided
        ],
        "settings": settings,
        "model_fingerprint": prov["model_fingerprint"],
        "scan_run": prov["scan_run"],
        "settings_sha256": prov["settings_sha256"],
        "decisions_head": head,
    }
    manifest_bytes = json.dumps(manifest, indent=2, sort_keys=True, ensure_ascii=False).encode() + b"\n"

    inputs = {Path(d["path"]).resolve() for d in datasets}
    clash = [n for n in files if (out_dir / n).resolve() in inputs or (out_dir / n).resolve().parent in inputs]
    if clash:
        raise UserError(f"{out_dir}: exporting there would overwrite the input {clash[0]}; choose another --out")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    # A previous sign-off no longer describes this directory: drop it before touching data.
    for name in SIGNOFF_FILES:
        (out_dir / name).unlink(missing_ok=True)
    for name, data in sorted(files.items()):
        atomic_write_bytes(out_dir / name, data)
    atomic_write_bytes(out_dir / MANIFEST, manifest_bytes)

    all_files = {**manifest["outputs"], MANIFEST: audit.sha256_bytes(manifest_bytes)}
    with ws.transaction(conn):
        rec = audit.append_record(
            conn,
            "export",
            {
                "actor": actor,
                "out_dir": str(out_dir.resolve()),
                "files": all_files,
                "manifest_sha256": all_files[MANIFEST],
                "counts": counts,
                "undecided_policy": undecided,
                "decisions_head": head,
                "provenance": prov,
            },
        )
    audit.sync_mirror(ws, conn)
    return ExportResult(out_dir, all_files, counts, manifest, rec["seq"])
