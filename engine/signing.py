"""Sign-off: an in-toto Statement v1 over the export, signed in a DSSE envelope.

The analyst signs with an Ed25519 key made by ``poison-tui keygen`` (``cryptography``,
encrypted PKCS8 PEM at rest, public half beside it as an OpenSSH line) or with their own
OpenSSH key through ``ssh-keygen -Y sign -n poison-tui``. Either way the signed bytes are the
DSSE pre-authentication encoding (PAE) of the statement, so one envelope format serves both;
the signature's ``keyid`` says which kind it is (``ed25519:`` or ``sshsig:``).

The statement names the sha256 of every file in the bundle (cleaned data, excluded records,
manifest, the audit log copy) and, in its predicate, the audit head (record count and hash):
a chain alone cannot show that its tail was cut off, a signed head can.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from engine import __version__, audit
from engine.atomic import atomic_write_bytes
from engine.decisions import default_actor
from engine.errors import UserError
from engine.workspace import Workspace, utc_now

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://poison-tui.dev/signoff/v1"
SSH_NAMESPACE = "poison-tui"
ENVELOPE = "signoff.dsse.json"
BUNDLE_AUDIT = "audit.jsonl"


# -- keys ------------------------------------------------------------------------------------
def default_key_path() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "poison-tui" / "signing_key.pem"


def openssh_public(key: Ed25519PublicKey, comment: str = "") -> str:
    line = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    return f"{line} {comment}".strip()


def fingerprint(openssh_line: str) -> str:
    """``SHA256:...`` exactly as ``ssh-keygen -l`` prints it."""
    parts = openssh_line.split()
    if len(parts) < 2:
        raise UserError("not an OpenSSH public key line")
    blob = base64.b64decode(parts[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


@dataclass(frozen=True)
class KeyInfo:
    path: Path
    public_path: Path
    public_key: str  # OpenSSH line
    fingerprint: str


def generate_key(path: Path, passphrase: bytes, comment: str = "poison-tui", force: bool = False) -> KeyInfo:
    """Create an Ed25519 key encrypted with ``passphrase``; the public key goes to ``PATH.pub``."""
    path = Path(path)
    pub_path = path.with_name(path.name + ".pub")
    if not passphrase:
        raise UserError("an empty passphrase would leave the signing key unencrypted; choose one")
    if path.exists() and not force:
        raise UserError(f"{path}: a key already exists; choose another --out or remove it first")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    old_umask = os.umask(0o077)  # the temp file is created 0600 from the start
    try:
        atomic_write_bytes(path, pem)
    finally:
        os.umask(old_umask)
    os.chmod(path, 0o600)
    public = openssh_public(key.public_key(), comment)
    atomic_write_bytes(pub_path, public.encode() + b"\n")
    return KeyInfo(path, pub_path, public, fingerprint(public))


def load_private_key(path: Path, passphrase: bytes | None) -> Ed25519PrivateKey:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the signing key ({exc.strerror})") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase or None)
    except TypeError:
        raise UserError(f"{path}: the key is encrypted; give its passphrase") from None
    except ValueError:
        raise UserError(
            f"{path}: wrong passphrase, or not a PEM key made by 'poison-tui keygen' "
            "(for an OpenSSH key use --ssh-key)"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"{path}: not an Ed25519 key")
    return key


def load_public_key(path: Path) -> str:
    """An OpenSSH public key line from a ``.pub`` file or a PEM public key."""
    path = Path(path)
    try:
        data = path.read_bytes().strip()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the public key ({exc.strerror})") from None
    if data.startswith(b"-----BEGIN PUBLIC KEY"):
        key = serialization.load_pem_public_key(data)
        if not isinstance(key, Ed25519PublicKey):
            raise UserError(f"{path}: not an Ed25519 public key")
        return openssh_public(key)
    line = data.decode("utf-8", "replace").splitlines()[0] if data else ""
    if not line.startswith("ssh-"):
        raise UserError(f"{path}: not an OpenSSH public key ('ssh-ed25519 AAAA...') or PEM public key")
    return line


def parse_allowed_signers(path: Path) -> list[tuple[list[str], str]]:
    """(principals, 'type base64') pairs from an OpenSSH allowed_signers file."""
    out = []
    for lineno, raw in enumerate(Path(path).read_text("utf-8").splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        # principals [options] keytype base64 [comment]
        idx = next((i for i, f in enumerate(fields) if f.startswith(("ssh-", "ecdsa-", "sk-"))), None)
        if idx is None or idx + 1 >= len(fields):
            raise UserError(f"{path}:{lineno}: not an allowed_signers line")
        out.append((fields[0].split(","), f"{fields[idx]} {fields[idx + 1]}"))
    return out


def same_key(a: str, b: str) -> bool:
    return a.split()[:2] == b.split()[:2]


# -- DSSE ------------------------------------------------------------------------------------
def pae(payload_type: str, payload: bytes) -> bytes:
    t = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(t), t, len(payload), payload)


def _ssh_sign(key_path: Path, data: bytes) -> bytes:
    if shutil.which("ssh-keygen") is None:
        raise UserError("ssh-keygen is not installed; sign with a key from 'poison-tui keygen' instead")
    with tempfile.TemporaryDirectory() as tmp:
        msg = Path(tmp) / "statement.pae"
        msg.write_bytes(data)
        proc = subprocess.run(
            ["ssh-keygen", "-Y", "sign", "-f", str(key_path), "-n", SSH_NAMESPACE, str(msg)],
            capture_output=True, text=True,
        )
        if proc.returncode != 0:
            raise UserError(f"ssh-keygen -Y sign failed: {proc.stderr.strip() or proc.returncode}")
        return (Path(tmp) / "statement.pae.sig").read_bytes()


def ssh_verify(public_line: str, identity: str, data: bytes, armored_sig: bytes,
               allowed_signers: Path | None = None) -> tuple[bool, str]:
    """Check an SSHSIG with ``ssh-keygen -Y verify`` (against allowed_signers when given)."""
    if shutil.which("ssh-keygen") is None:
        return False, "ssh-keygen is not installed, cannot check an OpenSSH signature"
    with tempfile.TemporaryDirectory() as tmp:
        sig = Path(tmp) / "sig"
        sig.write_bytes(armored_sig)
        signers = allowed_signers
        if signers is None:
            signers = Path(tmp) / "allowed_signers"
            signers.write_text(f'"{identity}" {public_line}\n')
        proc = subprocess.run(
            ["ssh-keygen", "-Y", "verify", "-f", str(signers), "-I", identity, "-n", SSH_NAMESPACE,
             "-s", str(sig)],
            input=data, capture_output=True,
        )
    out = (proc.stdout + proc.stderr).decode("utf-8", "replace").strip()
    return proc.returncode == 0, out


@dataclass(frozen=True)
class Signer:
    """How to sign: a poison-tui PEM key (with passphrase) or an OpenSSH private key."""

    key_path: Path
    passphrase: bytes | None = None
    ssh: bool = False

    def public_line(self) -> str:
        if self.ssh:
            pub = Path(str(self.key_path) + ".pub")
            if not pub.exists():
                raise UserError(f"{pub}: the OpenSSH public key must sit beside the private key")
            return load_public_key(pub)
        return openssh_public(load_private_key(self.key_path, self.passphrase).public_key())

    def sign(self, data: bytes) -> tuple[str, bytes]:
        """(keyid, signature bytes)."""
        if self.ssh:
            return "sshsig:" + fingerprint(self.public_line()), _ssh_sign(self.key_path, data)
        key = load_private_key(self.key_path, self.passphrase)
        return "ed25519:" + fingerprint(openssh_public(key.public_key())), key.sign(data)


def envelope(statement: dict[str, Any], signer: Signer) -> tuple[dict[str, Any], bytes]:
    payload = audit.canonical_json(statement)
    keyid, sig = signer.sign(pae(PAYLOAD_TYPE, payload))
    env = {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": keyid, "sig": base64.b64encode(sig).decode()}],
    }
    return env, payload


# -- sign-off --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SignoffSummary:
    out_dir: Path
    counts: dict[str, int]
    files: dict[str, str]
    audit_head: tuple[int, str]
    model_fingerprint: str | None
    dataset_sha256: list[str]


def signoff_summary(ws: Workspace, out_dir: Path | None = None) -> SignoffSummary:
    """What the analyst is about to sign; raises UserError when the export is missing or stale."""
    from engine import export as export_mod

    out_dir = Path(out_dir) if out_dir is not None else export_mod.default_out_dir(ws)
    manifest_path = out_dir / export_mod.MANIFEST
    if not manifest_path.is_file():
        raise UserError(f"{out_dir}: no export to sign; run 'poison-tui export {ws.path}' first")
    manifest = json.loads(manifest_path.read_bytes())
    conn = ws.conn
    if manifest.get("decisions_head") != export_mod.decisions_head(conn):
        raise UserError(
            f"{out_dir}: decisions changed after this export; run 'poison-tui export {ws.path}' again "
            "before signing"
        )
    files = {}
    for name, digest in sorted(manifest["outputs"].items()):
        p = out_dir / name
        if not p.is_file() or audit.sha256_file(p) != digest:
            raise UserError(f"{p}: does not match the manifest (changed since the export); export again")
        files[name] = digest
    files[export_mod.MANIFEST] = audit.sha256_file(manifest_path)
    exported = conn.execute(
        "SELECT 1 FROM audit_log WHERE action = 'export' AND json_extract(record, '$.manifest_sha256') = ?",
        (files[export_mod.MANIFEST],),
    ).fetchone()
    if exported is None:
        raise UserError(f"{manifest_path}: no export record in this workspace's audit log names it")
    return SignoffSummary(
        out_dir, manifest["counts"], files, audit.head(conn), manifest.get("model_fingerprint"),
        [i["sha256"] for i in manifest["inputs"]],
    )


@dataclass(frozen=True)
class SignoffResult:
    envelope_path: Path
    statement: dict[str, Any]
    key_fingerprint: str
    audit_seq: int


def signoff(
    ws: Workspace,
    identity: str,
    signer: Signer,
    out_dir: Path | None = None,
    actor: str | None = None,
) -> SignoffResult:
    """Sign the export in ``out_dir`` (non-interactive; the CLI and the app's screen call this)."""
    identity = identity.strip()
    if not identity:
        raise UserError("the signer's identity (name or e-mail) is required")
    summary = signoff_summary(ws, out_dir)
    public = signer.public_line()
    fp = fingerprint(public)
    conn = ws.conn
    # The bundle's log is the DB chain up to the head being signed, byte for byte.
    seq, head_hash = summary.audit_head
    log = b"".join(rec.encode("utf-8") + b"\n" for s, rec in audit.db_records(conn) if s <= seq)
    subjects = {**summary.files, BUNDLE_AUDIT: audit.sha256_bytes(log)}
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": n, "digest": {"sha256": d}} for n, d in sorted(subjects.items())],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "audit_head": {"seq": seq, "hash": head_hash},
            "audit_records": seq,
            "counts": summary.counts,
            "dataset_sha256": summary.dataset_sha256,
            "model_fingerprint": summary.model_fingerprint,
            "signer": {
                "identity": identity,
                "key_fingerprint": fp,
                "public_key": " ".join(public.split()[:2]),
                "method": "sshsig" if signer.ssh else "ed25519",
            },
            "signed_at": utc_now(),
            "tool_version": __version__,
        },
    }
    env, payload = envelope(statement, signer)
    out = summary.out_dir
    atomic_write_bytes(out / BUNDLE_AUDIT, log)
    env_bytes = json.dumps(env, indent=2, sort_keys=True).encode() + b"\n"
    atomic_write_bytes(out / ENVELOPE, env_bytes)
    with ws.transaction(conn):
        rec = audit.append_record(
            conn,
            "signoff",
            {
                "actor": actor or default_actor(),
                "identity": identity,
                "key_fingerprint": fp,
                "method": statement["predicate"]["signer"]["method"],
                "out_dir": str(out.resolve()),
                "signed_head": {"seq": seq, "hash": head_hash},
                "statement_sha256": audit.sha256_bytes(payload),
                "envelope_sha256": audit.sha256_bytes(env_bytes),
                "subjects": subjects,
            },
        )
    audit.sync_mirror(ws, conn)
    return SignoffResult(out / ENVELOPE, statement, fp, rec["seq"])


def read_envelope(path: Path) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
    """(envelope, payload bytes, statement); UserError when it is not a DSSE envelope."""
    try:
        env = json.loads(Path(path).read_bytes())
        payload = base64.b64decode(env["payload"], validate=True)
        statement = json.loads(payload)
        if env.get("payloadType") != PAYLOAD_TYPE or statement.get("_type") != STATEMENT_TYPE:
            raise ValueError("not an in-toto statement")
        if not env.get("signatures"):
            raise ValueError("no signatures")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"{path}: not a poison-tui sign-off envelope ({exc})") from None
    return env, payload, statement


def check_signature(
    env: dict[str, Any], payload: bytes, statement: dict[str, Any], trusted: str | None,
    allowed_signers: Path | None,
) -> tuple[bool, str]:
    """Check the envelope's signature; against ``trusted`` (an OpenSSH public key line) or an
    allowed_signers file when given, else only against the key the statement names."""
    signer = statement.get("predicate", {}).get("signer", {})
    embedded = signer.get("public_key", "")
    identity = signer.get("identity", "")
    if not embedded.startswith("ssh-"):
        return False, "the statement names no signer public key"
    key_line = embedded
    if trusted is not None:
        if not same_key(trusted, embedded):
            return False, (f"signed by {fingerprint(embedded)}, not by the trusted key "
                           f"{fingerprint(trusted)} (wrong key)")
    elif allowed_signers is not None:
        allowed = parse_allowed_signers(allowed_signers)
        if not any(same_key(k, embedded) and (identity in p or "*" in p) for p, k in allowed):
            return False, (f"{identity!r} with key {fingerprint(embedded)} is not in "
                           f"{allowed_signers} (wrong key or signer)")
    sig_entry = env["signatures"][0]
    keyid, sig = sig_entry.get("keyid", ""), base64.b64decode(sig_entry.get("sig", ""))
    data = pae(env["payloadType"], payload)
    if keyid.startswith("sshsig:"):
        ok, out = ssh_verify(key_line, identity, data, sig, allowed_signers)
        return ok, out if not ok else f"good OpenSSH signature by {identity} ({fingerprint(key_line)})"
    if keyid.startswith("ed25519:") and key_line.startswith("ssh-ed25519 "):
        pub = serialization.load_ssh_public_key(key_line.encode())
        assert isinstance(pub, Ed25519PublicKey)
        try:
            pub.verify(sig, data)
        except InvalidSignature:
            return False, "the signature does not match the statement (statement or signature altered)"
        return True, f"good Ed25519 signature by {identity} ({fingerprint(key_line)})"
    return False, f"unsupported signature kind {keyid!r}"
