"""Verify a workspace or an export bundle: chain, signature, signer, output hashes, replay.

Checks run in an order that names the most specific culprit first: the audit chain (the
first bad record), the signed head (truncation, records appended after sign-off), the
signature and the signer, the output hashes (a swapped file), and finally the replay: the
decisions in the audit log, applied to the input records, must rebuild every output file
byte for byte.

A bundle (see engine.export) verifies away from the workspace; the replay then needs the
input records, from the workspace (``workspace=``) or the original input files (``inputs=``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import audit, signing
from engine import export as export_mod
from engine.decisions import current_states, replay
from engine.errors import UserError
from engine.workspace import DB_NAME, Workspace


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool | None  # None: skipped (not applicable, or not enough to check it)
    detail: str

    def line(self) -> str:
        mark = {True: "ok  ", False: "FAIL", None: "skip"}[self.ok]
        return f"{mark} {self.name}: {self.detail}"


@dataclass
class VerifyReport:
    target: Path
    kind: str  # "workspace" | "bundle"
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok is not False for c in self.checks)

    @property
    def first_problem(self) -> Check | None:
        return next((c for c in self.checks if c.ok is False), None)

    def add(self, name: str, ok: bool | None, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok is not False


def verify(
    path: Path,
    public_key: Path | None = None,
    allowed_signers: Path | None = None,
    workspace: Path | None = None,
    inputs: list[Path] | None = None,
) -> VerifyReport:
    path = Path(path)
    if path.is_file() and path.name == DB_NAME:
        path = path.parent
    trusted = signing.load_public_key(public_key) if public_key is not None else None
    if (path / DB_NAME).is_file():
        ws = Workspace.open(path)
        try:
            report = VerifyReport(path, "workspace")
            chain = _db_chain(ws.conn)
            _verify_workspace(ws, report, chain)
            bundle = latest_export_dir(ws)
            if (bundle / export_mod.MANIFEST).is_file():
                _verify_bundle(bundle, report, trusted, allowed_signers, ws, inputs, prefix="export: ",
                               chain=chain)
                _check_current(bundle, ws, report)
            else:
                report.add("export", None, f"no export in {bundle}")
            return report
        finally:
            ws.close()
    if (path / export_mod.MANIFEST).is_file():
        report = VerifyReport(path, "bundle")
        ws = Workspace.open(workspace) if workspace is not None else None
        try:
            _verify_bundle(path, report, trusted, allowed_signers, ws, inputs)
        finally:
            if ws is not None:
                ws.close()
        return report
    raise UserError(f"{path}: neither a workspace ({DB_NAME}) nor an export bundle ({export_mod.MANIFEST})")


def latest_export_dir(ws: Workspace) -> Path:
    """Where the last export went (if it is still there), else the default export directory."""
    row = ws.conn.execute(
        "SELECT json_extract(record, '$.out_dir') FROM audit_log WHERE action = 'export' ORDER BY seq DESC LIMIT 1"
    ).fetchone()
    if row is not None and row[0] and (Path(row[0]) / export_mod.MANIFEST).is_file():
        return Path(row[0])
    return export_mod.default_out_dir(ws)


# -- workspace -------------------------------------------------------------------------------
def _db_chain(conn: sqlite3.Connection) -> tuple[list[dict[str, Any]], list[bytes], audit.ChainProblem | None]:
    records, lines = [], []
    for pos, row in enumerate(conn.execute("SELECT seq, record, prev_hash, hash FROM audit_log ORDER BY seq"), 1):
        text = row[1].encode("utf-8")
        try:
            rec = json.loads(text)
        except ValueError:
            return records, lines, audit.ChainProblem(pos, row[0], f"seq {row[0]}: unreadable record")
        if (rec.get("seq"), rec.get("prev_hash"), rec.get("hash")) != (row[0], row[2], row[3]):
            return records, lines, audit.ChainProblem(pos, row[0], f"seq {row[0]}: row columns disagree with the record")
        if audit.canonical_json(rec) != text:
            return records, lines, audit.ChainProblem(pos, row[0], f"seq {row[0]}: not in canonical form (edited)")
        records.append(rec)
        lines.append(text + b"\n")
    return records, lines, audit.check_chain(records)


Chain = tuple[list[dict[str, Any]], list[bytes], audit.ChainProblem | None]


def _verify_workspace(ws: Workspace, report: VerifyReport, chain: Chain) -> None:
    conn = ws.conn
    records, lines, problem = chain
    if problem is not None:
        report.add("audit chain (database)", False, str(problem))
        return
    head = records[-1]["hash"] if records else audit.GENESIS_HASH
    report.add("audit chain (database)", True, f"{len(records)} records, head {head[:16]}")

    mirror = audit.mirror_path(ws)
    if not mirror.exists():
        report.add("audit mirror", None if not records else False,
                   f"{mirror.name} missing" + ("" if not records else f" (the database has {len(records)} records)"))
    else:
        data = mirror.read_bytes()
        m_lines = data.splitlines(keepends=True)
        bad = next((i for i, (a, b) in enumerate(zip(m_lines, lines, strict=False)) if a != b), None)
        if bad is not None:
            report.add("audit mirror", False, f"record {bad + 1} of {mirror.name} differs from the database")
        elif len(m_lines) > len(lines):
            report.add("audit mirror", False,
                       f"record {len(lines) + 1} of {mirror.name} is not in the database (appended)")
        elif len(m_lines) < len(lines):
            report.add("audit mirror", True, f"lags the database from record {len(m_lines) + 1} "
                       "(repaired on the next decision)")
        else:
            report.add("audit mirror", True, f"{mirror.name} equals the database")

    # The derived tables must be what the log says.
    replayed = replay(records)
    derived = dict(current_states(conn))
    for uid in sorted(set(replayed) | set(derived)):
        if replayed.get(uid) != derived.get(uid):
            report.add("decision state", False,
                       f"status of {uid} is {derived.get(uid)} but the audit log says {replayed.get(uid)}")
            break
    else:
        logged = {r["decision_seq"]: r for r in records if "decision_seq" in r}
        for row in conn.execute("SELECT seq, uid, action, new_status FROM decisions ORDER BY seq"):
            rec = logged.pop(row[0], None)
            if rec is None or (rec["uid"], rec["action"], rec["new_status"]) != (row[1], row[2], row[3]):
                report.add("decision state", False, f"decision {row[0]} does not match its audit record")
                break
        else:
            if logged:
                report.add("decision state", False, f"audit record for decision {min(logged)} has no decision row")
            else:
                report.add("decision state", True, f"{len(derived)} decided items match the audit log")


def _check_current(bundle: Path, ws: Workspace, report: VerifyReport) -> None:
    try:
        exported = json.loads((bundle / export_mod.MANIFEST).read_bytes()).get("decisions_head", {})
    except ValueError:
        return
    now = export_mod.decisions_head(ws.conn)
    if exported != now:
        # not tampering: the analyst went on deciding after exporting
        report.add("export: current", None, f"stale: decisions changed after the export (up to record "
                   f"{exported.get('seq')}, now {now['seq']}); export and sign again")
    else:
        report.add("export: current", True, "the export reflects every decision")


# -- bundle ----------------------------------------------------------------------------------
def _verify_bundle(
    bundle: Path,
    report: VerifyReport,
    trusted: str | None,
    allowed_signers: Path | None,
    ws: Workspace | None,
    inputs: list[Path] | None,
    prefix: str = "",
    chain: Chain | None = None,
) -> None:
    def add(name: str, ok: bool | None, detail: str) -> bool:
        return report.add(prefix + name, ok, detail)

    manifest_path = bundle / export_mod.MANIFEST
    try:
        manifest = json.loads(manifest_path.read_bytes())
        outputs: dict[str, str] = manifest["outputs"]
        head_ref = manifest["decisions_head"]
    except (ValueError, KeyError, TypeError) as exc:
        add("manifest", False, f"{manifest_path}: unreadable ({exc})")
        return
    manifest_sha = audit.sha256_file(manifest_path)

    # 1. the audit log: the bundle's copy, else the workspace's
    log_path = bundle / signing.BUNDLE_AUDIT
    if log_path.is_file():
        records, problem = audit.parse_lines(log_path.read_bytes())
        problem = problem or audit.check_chain(records)
        source = f"{log_path.name}"
    elif ws is not None:
        chain = chain or _db_chain(ws.conn)
        records, _, problem = chain
        source = "workspace database"
    else:
        add("audit chain", False, f"{bundle} has no {signing.BUNDLE_AUDIT} (sign the export first)")
        return
    if problem is not None:
        add("audit chain", False, f"{source}: {problem}")
        return
    add("audit chain", True, f"{source}: {len(records)} records")
    if ws is not None and log_path.is_file():
        chain = chain or _db_chain(ws.conn)
        db_records, _, db_problem = chain
        if db_problem is None and records != db_records[: len(records)]:
            first = next(i for i, (a, b) in enumerate(zip(records, db_records, strict=False)) if a != b) \
                if len(db_records) >= len(records) else len(db_records)
            add("audit chain", False, f"record {first + 1} of {log_path.name} differs from the workspace database")
            return

    # 2. the sign-off: signed head, signature, signer, subjects
    env_path = bundle / signing.ENVELOPE
    if not env_path.is_file():
        add("signature", None, "not signed (no signoff.dsse.json)")
    else:
        try:
            env, payload, statement = signing.read_envelope(env_path)
        except UserError as exc:
            add("signature", False, str(exc))
            return
        signed = statement.get("predicate", {}).get("audit_head", {})
        n, h = signed.get("seq"), signed.get("hash")
        if not isinstance(n, int):
            add("signed head", False, "the statement names no audit head")
            return
        if len(records) < n:
            add("signed head", False,
                f"log truncated: it ends at record {len(records)}, the signed head is record {n}")
            return
        if records[n - 1]["hash"] != h if n else h != audit.GENESIS_HASH:
            add("signed head", False, f"record {n} is not the signed head (log rewritten)")
            return
        if log_path.is_file() and len(records) > n:
            add("signed head", False, f"record {n + 1} was appended after the signed head (record {n})")
            return
        add("signed head", True, f"record {n}, {str(h)[:16]}")
        ok, detail = signing.check_signature(env, payload, statement, trusted, allowed_signers)
        if not add("signature", ok, detail):
            return
        if trusted is None and allowed_signers is None:
            add("signer", None, "not checked against a trusted key (pass --public-key or --allowed-signers)")
        subjects = {s["name"]: s["digest"]["sha256"] for s in statement.get("subject", [])}
        expected = {*outputs, export_mod.MANIFEST, signing.BUNDLE_AUDIT}
        if set(subjects) != expected:
            add("signed files", False, f"the statement names {sorted(subjects)}, the bundle has {sorted(expected)}")
            return
        for name, digest in sorted(subjects.items()):
            p = bundle / name
            if not p.is_file() or audit.sha256_file(p) != digest:
                add("signed files", False, f"{name}: does not match the signed statement (swapped or edited)")
                return
        add("signed files", True, f"{len(subjects)} files match the signed statement")

    # 3. outputs against the manifest
    for name, digest in sorted(outputs.items()):
        p = bundle / name
        if not p.is_file():
            add("outputs", False, f"{name}: missing")
            return
        if audit.sha256_file(p) != digest:
            add("outputs", False, f"{name}: sha256 does not match the manifest (swapped or edited)")
            return
    add("outputs", True, f"{len(outputs)} files match the manifest")

    # 4. the export is in the log, and replaying the log rebuilds the outputs
    export_rec = next((r for r in records if r.get("action") == "export"
                       and r.get("manifest_sha256") == manifest_sha), None)
    if export_rec is None:
        add("export record", False, "no export record in the audit log names this manifest")
        return
    seq = head_ref.get("seq", 0)
    if seq > len(records) or (seq and records[seq - 1]["hash"] != head_ref.get("hash")):
        add("export record", False, f"the manifest's decisions head (record {seq}) is not in the log")
        return
    add("export record", True, f"record {export_rec['seq']}, decisions up to record {seq}")
    loader = _input_loader(ws, inputs, manifest, records)
    if loader is None:
        add("replay", None, "input records not available (pass --workspace or --input)")
        return
    _replay(bundle, manifest, records[:seq], loader, add)


InputLoader = Callable[[int, dict[str, Any]], "list[export_mod.InputRecord] | str"]


def _input_loader(
    ws: Workspace | None, inputs: list[Path] | None, manifest: dict[str, Any], records: list[dict[str, Any]]
) -> InputLoader | None:
    if ws is not None:
        conn = ws.conn

        def from_workspace(_: int, entry: dict[str, Any]) -> list[export_mod.InputRecord] | str:
            row = conn.execute(
                "SELECT id FROM datasets WHERE role = 'train' AND sha256 = ? ORDER BY id DESC LIMIT 1",
                (entry["sha256"],),
            ).fetchone()
            if row is None:
                return f"no dataset with sha256 {entry['sha256'][:16]} in the workspace"
            return export_mod.input_records(conn, row[0])

        return from_workspace
    if not inputs:
        return None
    if len(inputs) != len(manifest["inputs"]):
        return lambda _i, _e: f"{len(inputs)} --input paths given, the export has {len(manifest['inputs'])} inputs"
    # Away from the workspace, uids come from the audit log: each decision names the item's
    # position in its dataset (item_ordinal) and the dataset's hash.
    uid_at: dict[tuple[str | None, int], str] = {}
    for rec in records:
        if "item_ordinal" in rec:
            uid_at[(rec.get("provenance", {}).get("dataset_sha256"), rec["item_ordinal"])] = rec["uid"]
    for ex in manifest.get("undecided_excluded", []):
        uid_at[(manifest["inputs"][ex["input"]]["sha256"], ex["ordinal"])] = ex["uid"]

    def from_file(i: int, entry: dict[str, Any]) -> list[export_mod.InputRecord] | str:
        return reread_input(Path(inputs[i]), entry, uid_at)

    return from_file


def reread_input(
    path: Path, entry: dict[str, Any], uid_at: dict[tuple[str | None, int], str]
) -> list[export_mod.InputRecord] | str:
    """The input's records read again by the format readers, with uids from the audit log."""
    import dataclasses

    from engine.formats import ReadOptions, read_dataset

    if path.is_file() and audit.sha256_file(path) != entry["sha256"]:
        return f"{path}: sha256 differs from the exported input {entry['path']} (not the same file)"
    names = {f.name for f in dataclasses.fields(ReadOptions)}
    options = json.loads(_as_text(entry.get("options", "{}")))
    opts = ReadOptions(**{k: v for k, v in options.items() if k in names})
    try:
        result = read_dataset(path, entry["format"], opts)
    except UserError as exc:
        return f"cannot re-read {path}: {exc}"
    sha = entry["sha256"]
    return [
        export_mod.InputRecord(
            uid_at.get((sha, r.ordinal), f"{sha[:12]}#{r.ordinal}"), r.ordinal, r.line, r.source_id,
            r.raw, audit.sha256_bytes(r.raw),
        )
        for r in result.records
    ]


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _replay(
    bundle: Path,
    manifest: dict[str, Any],
    records: list[dict[str, Any]],
    loader: InputLoader,
    add: Callable[[str, bool | None, str], bool],
) -> None:
    datasets, inputs = [], {}
    for i, entry in enumerate(manifest["inputs"]):
        got = loader(i, entry)
        if isinstance(got, str):
            add("replay", False, got)
            return
        datasets.append({
            "id": i, "output": entry["output"], "path": entry["path"], "format": entry["format"],
            "sha256": entry["sha256"], "n_records": entry["n_records"],
            "options": _as_text(entry.get("options", "{}")), "layout": _as_text(entry.get("layout", "{}")),
        })
        inputs[i] = got
    hashes = {r.uid: r.sha256 for recs in inputs.values() for r in recs}
    for rec in records:
        uid = rec.get("uid")
        if uid is not None and rec.get("item_sha256") not in (None, hashes.get(uid)):
            add("replay", False, f"record {rec['seq']}: item {uid} is not in the input with that content hash")
            return
    states = {u: (s.status, s.reason, s.note) for u, s in replay(records).items()}
    excluded = {e["uid"] for e in manifest.get("undecided_excluded", [])}
    files, _ = export_mod.build_outputs(datasets, inputs, states, excluded)
    for name, data in sorted(files.items()):
        actual = (bundle / name).read_bytes()
        if actual != data:
            at = next((i for i, (a, b) in enumerate(zip(actual, data, strict=False)) if a != b),
                      min(len(actual), len(data)))
            line = data[:at].count(b"\n") + 1
            add("replay", False, f"{name}: replaying the audit log gives different bytes from line {line}")
            return
    add("replay", True, f"replaying {len(records)} records rebuilds {len(files)} files byte for byte")
