"""The tamper matrix: every kind of change to a signed bundle or a workspace is caught and named."""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from gov_fixtures import jsonl_workspace

from engine import audit, signing
from engine.decisions import decide, undo
from engine.errors import UserError
from engine.export import MANIFEST, QUARANTINE, REMOVED, export
from engine.verify import verify

IDENTITY = "alice@example.org"


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("signed")
    ws, src, uids = jsonl_workspace(tmp)
    decide(ws, [uids[0]], "remove", reason="trigger_phrase", note="James Bond", actor="alice")
    decide(ws, uids[1:4], "quarantine", reason="label_flip", bulk=True, actor="alice")
    decide(ws, [uids[4]], "keep", actor="bob")
    decide(ws, [uids[6]], "remove", actor="bob")
    undo(ws, actor="bob")
    result = export(ws)
    key = signing.generate_key(tmp / "key.pem", b"correct horse")
    other = signing.generate_key(tmp / "other.pem", b"x")
    signing.signoff(ws, IDENTITY, signing.Signer(key.path, b"correct horse"))
    ws.close()
    return {"ws": ws.path, "src": src, "bundle": result.out_dir, "key": key, "other": other, "tmp": tmp}


@pytest.fixture
def bundle(signed: dict, tmp_path: Path) -> Path:
    """A copy of the signed bundle, away from the workspace."""
    return Path(shutil.copytree(signed["bundle"], tmp_path / "bundle"))


def _check(path: Path, signed: dict, **kw) -> tuple[bool, str]:
    kw.setdefault("public_key", signed["key"].public_path)
    if (path / MANIFEST).is_file() and "workspace" not in kw:
        kw.setdefault("inputs", [signed["src"]])
    report = verify(path, **kw)
    problem = report.first_problem
    return report.ok, "" if problem is None else f"{problem.name}: {problem.detail}"


def _edit_log(bundle: Path, fn: Callable[[list[bytes]], list[bytes]]) -> None:
    p = bundle / "audit.jsonl"
    p.write_bytes(b"".join(fn(p.read_bytes().splitlines(keepends=True))))


def _rehash(lines: list[bytes], start: int) -> list[bytes]:
    """What a forger who knows the scheme does: recompute hashes and links from ``start``."""
    recs = [json.loads(x) for x in lines]
    for i in range(start, len(recs)):
        recs[i]["prev_hash"] = recs[i - 1]["hash"] if i else audit.GENESIS_HASH
        recs[i]["hash"] = audit.compute_hash(recs[i])
    return [audit.canonical_json(r) + b"\n" for r in recs]


def test_untouched_bundle_and_workspace_verify(signed: dict, bundle: Path) -> None:
    assert _check(bundle, signed) == (True, "")
    report = verify(bundle, public_key=signed["key"].public_path, inputs=[signed["src"]])
    assert [c.name for c in report.checks if c.ok] == [
        "audit chain", "signed head", "signature", "signed files", "outputs", "export record", "replay"]
    assert _check(signed["ws"], signed) == (True, "")
    assert _check(bundle, signed, workspace=signed["ws"]) == (True, "")
    # without a trusted key the signature is checked against the key it names, and said so
    report = verify(bundle, inputs=[signed["src"]])
    assert report.ok and any(c.name == "signer" and c.ok is None for c in report.checks)


def _set_note(lines: list[bytes], i: int, note: str) -> list[bytes]:
    rec = json.loads(lines[i])
    rec["note"] = note
    lines[i] = audit.canonical_json(rec) + b"\n"
    return lines


def _append(lines: list[bytes]) -> list[bytes]:
    rec = json.loads(lines[-1])
    rec["seq"] += 1
    return [*lines, audit.canonical_json(rec) + b"\n"]


TAMPERS: dict[str, tuple[Callable[[list[bytes]], list[bytes]], str]] = {
    "edited": (lambda ls: _set_note(ls, 1, "nothing to see"), "audit chain: audit.jsonl: record 2: seq 2: content does not match its hash"),
    "edited_rehashed": (lambda ls: _rehash(_set_note(ls, 1, "x"), 1), "signed head: record 9 is not the signed head"),
    "edited_one_hash": (lambda ls: _rehash(_set_note(ls, 1, "x"), 1)[:2] + ls[2:], "record 3: seq 3: prev_hash does not match record 2"),
    "deleted": (lambda ls: ls[:2] + ls[3:], "record 3: expected seq 3, found seq 4"),
    "reordered": (lambda ls: [ls[0], ls[2], ls[1], *ls[3:]], "record 2: expected seq 2, found seq 3"),
    "appended": (lambda ls: _rehash(_append(ls), len(ls)), "record 10 was appended after the signed head"),
    "truncated": (lambda ls: ls[:-1], "log truncated: it ends at record 8, the signed head is record 9"),
    "torn": (lambda ls: [*ls[:-1], ls[-1][:-10]], "record 9: torn final line"),
    "not_canonical": (lambda ls: [ls[0].replace(b'":', b'": ', 1), *ls[1:]], "record 1: not in canonical form"),
}


@pytest.mark.parametrize("name", sorted(TAMPERS))
def test_tampered_audit_log_is_named(signed: dict, bundle: Path, name: str) -> None:
    fn, expected = TAMPERS[name]
    _edit_log(bundle, fn)
    ok, problem = _check(bundle, signed)
    assert not ok
    assert expected in problem


def test_wrong_key_and_wrong_signer(signed: dict, bundle: Path) -> None:
    ok, problem = _check(bundle, signed, public_key=signed["other"].public_path)
    assert not ok and "wrong key" in problem
    allowed = signed["tmp"] / "allowed_signers"
    allowed.write_text(f"{IDENTITY} {signed['key'].public_key}\n")
    assert _check(bundle, signed, public_key=None, allowed_signers=allowed) == (True, "")
    allowed.write_text(f"mallory@example.org {signed['key'].public_key}\n")
    ok, problem = _check(bundle, signed, public_key=None, allowed_signers=allowed)
    assert not ok and "not in" in problem


def test_forged_statement_fails_the_signature(signed: dict, bundle: Path) -> None:
    env_path = bundle / signing.ENVELOPE
    env, _, statement = signing.read_envelope(env_path)
    statement["predicate"]["counts"]["remove"] = 0
    env["payload"] = __import__("base64").b64encode(audit.canonical_json(statement)).decode()
    env_path.write_text(json.dumps(env))
    ok, problem = _check(bundle, signed)
    assert not ok and problem.startswith("signature:") and "altered" in problem


def test_swapped_output_file_is_named(signed: dict, bundle: Path) -> None:
    removed, quarantine = (bundle / REMOVED).read_bytes(), (bundle / QUARANTINE).read_bytes()
    (bundle / REMOVED).write_bytes(quarantine)
    (bundle / QUARANTINE).write_bytes(removed)
    ok, problem = _check(bundle, signed)
    assert not ok and problem == "signed files: quarantine.jsonl: does not match the signed statement (swapped or edited)"


def test_unsigned_export_with_edited_data_fails_the_replay(signed: dict, tmp_path: Path) -> None:
    # No signature: someone drops a line from the cleaned file and fixes up the manifest.
    ws_dir = Path(shutil.copytree(signed["ws"], tmp_path / "ws"))
    from engine.workspace import Workspace

    ws = Workspace.open(ws_dir)
    out = tmp_path / "unsigned"
    export(ws, out)
    data = (out / "train.jsonl").read_bytes().splitlines(keepends=True)
    (out / "train.jsonl").write_bytes(b"".join(data[1:]))
    manifest = json.loads((out / MANIFEST).read_bytes())
    manifest["outputs"]["train.jsonl"] = audit.sha256_file(out / "train.jsonl")
    (out / MANIFEST).write_text(json.dumps(manifest))
    ok, problem = _check(out, signed, workspace=ws_dir)
    assert not ok and "no export record in the audit log names this manifest" in problem
    # the same edit with the manifest left alone is a hash mismatch
    export(ws, out)
    (out / "train.jsonl").write_bytes(b"".join(data[1:]))
    ok, problem = _check(out, signed, workspace=ws_dir)
    assert not ok and problem.startswith("outputs: train.jsonl")


def test_replay_catches_a_forged_log_and_export(signed: dict, tmp_path: Path) -> None:
    """A log whose chain is intact but whose decisions do not produce the files is caught."""
    ws_dir = Path(shutil.copytree(signed["ws"], tmp_path / "ws"))
    from engine.workspace import Workspace

    ws = Workspace.open(ws_dir)
    out = tmp_path / "x"
    export(ws, out)
    # swap the removed record for another in the cleaned file, keeping manifest and log consistent
    src_lines = signed["src"].read_bytes().splitlines(keepends=True)
    cleaned = [src_lines[0]] + [line for line in (out / "train.jsonl").read_bytes().splitlines(keepends=True)
                                if line != src_lines[5]]
    (out / "train.jsonl").write_bytes(b"".join(cleaned))
    manifest_bytes = (out / MANIFEST).read_bytes()
    manifest = json.loads(manifest_bytes)
    manifest["outputs"]["train.jsonl"] = audit.sha256_file(out / "train.jsonl")
    new_manifest = json.dumps(manifest).encode()
    (out / MANIFEST).write_bytes(new_manifest)
    # forge the export record in the DB to name the new manifest, re-chaining the whole log
    conn = ws.conn
    rows = conn.execute("SELECT seq, record FROM audit_log ORDER BY seq").fetchall()
    lines = [r[1].encode() + b"\n" for r in rows]
    last = json.loads(lines[-1])
    last["manifest_sha256"] = audit.sha256_bytes(new_manifest)
    lines[-1] = audit.canonical_json(last) + b"\n"
    lines = _rehash(lines, len(lines) - 1)
    with ws.transaction():
        rec = json.loads(lines[-1])
        conn.execute("UPDATE audit_log SET record = ?, hash = ? WHERE seq = ?",
                     (lines[-1].decode().rstrip("\n"), rec["hash"], rec["seq"]))
    ok, problem = _check(out, signed, workspace=ws_dir)
    assert not ok and problem.startswith("replay: train.jsonl: replaying the audit log gives different bytes")


def test_workspace_tampering_is_named(signed: dict, tmp_path: Path) -> None:
    from engine.workspace import Workspace

    def fresh(name: str) -> Workspace:
        return Workspace.open(Path(shutil.copytree(signed["ws"], tmp_path / name)))

    ws = fresh("a")
    with ws.transaction() as conn:
        conn.execute("UPDATE review_status SET status = 'keep' WHERE status = 'remove'")
    ok, problem = _check(ws.path, signed)
    assert not ok and problem.startswith("decision state: status of")

    ws = fresh("b")
    with ws.transaction() as conn:
        rec = conn.execute("SELECT record FROM audit_log WHERE seq = 3").fetchone()[0]
        conn.execute("UPDATE audit_log SET record = ? WHERE seq = 3", (rec.replace("label_flip", "duplicate"),))
    ok, problem = _check(ws.path, signed)
    assert not ok and problem.startswith("audit chain (database): record 3")

    ws = fresh("c")
    mirror = audit.mirror_path(ws)
    mirror.write_bytes(mirror.read_bytes().replace(b"James Bond", b"Jane Bond"))
    ok, problem = _check(ws.path, signed)
    assert not ok and problem == "audit mirror: record 1 of audit.jsonl differs from the database"

    ws = fresh("d")
    with ws.transaction() as conn:
        conn.execute("DELETE FROM decisions WHERE seq = 2")
    ok, problem = _check(ws.path, signed)
    assert not ok and "decision" in problem


def test_decisions_after_signoff_make_the_export_stale_not_broken(signed: dict, tmp_path: Path) -> None:
    from engine.workspace import Workspace

    ws = Workspace.open(Path(shutil.copytree(signed["ws"], tmp_path / "ws")))
    uid = ws.conn.execute("SELECT uid FROM examples ORDER BY ordinal DESC LIMIT 1").fetchone()[0]
    decide(ws, [uid], "remove")
    report = verify(ws.path, public_key=signed["key"].public_path)
    assert report.ok
    assert any(c.name == "export: current" and c.ok is None and "stale" in c.detail for c in report.checks)
    with pytest.raises(UserError, match="decisions changed after this export"):
        signing.signoff(ws, IDENTITY, signing.Signer(signed["key"].path, b"correct horse"))


def test_wrong_passphrase_is_a_user_error(signed: dict) -> None:
    with pytest.raises(UserError, match="wrong passphrase"):
        signing.load_private_key(signed["key"].path, b"wrong")
    with pytest.raises(UserError, match="encrypted"):
        signing.load_private_key(signed["key"].path, None)
    assert oct(signed["key"].path.stat().st_mode & 0o777) == "0o600"
    assert b"ENCRYPTED PRIVATE KEY" in signed["key"].path.read_bytes()


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen")
def test_openssh_signoff_round_trip(tmp_path: Path) -> None:
    ws, src, uids = jsonl_workspace(tmp_path)
    decide(ws, uids[:1], "remove")
    out = export(ws).out_dir
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "alice", "-f", str(key)], check=True)
    result = signing.signoff(ws, IDENTITY, signing.Signer(key, ssh=True))
    env = json.loads(result.envelope_path.read_bytes())
    assert env["signatures"][0]["keyid"].startswith("sshsig:SHA256:")
    pub = (tmp_path / "id_ed25519.pub").read_text().strip()
    # the fingerprint is the one ssh-keygen itself prints
    printed = subprocess.run(["ssh-keygen", "-l", "-f", str(key) + ".pub"], capture_output=True, text=True).stdout
    assert result.key_fingerprint in printed
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"{IDENTITY} {pub}\n")
    assert verify(out, allowed_signers=allowed, inputs=[src]).ok
    allowed.write_text(f"bob@example.org {pub}\n")
    assert not verify(out, allowed_signers=allowed, inputs=[src]).ok
    # an edited statement no longer matches the OpenSSH signature
    env_obj, _, statement = signing.read_envelope(result.envelope_path)
    statement["predicate"]["signer"]["identity"] = "bob@example.org"
    env_obj["payload"] = __import__("base64").b64encode(audit.canonical_json(statement)).decode()
    result.envelope_path.write_text(json.dumps(env_obj))
    report = verify(out, allowed_signers=allowed, inputs=[src])
    assert not report.ok and report.first_problem.name == "signature"
