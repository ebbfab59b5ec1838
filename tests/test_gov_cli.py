"""The governance subcommands end to end: keygen, decide, undo, export, signoff, verify."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from gov_fixtures import jsonl_workspace

from engine.decisions import current_status
from poison_tui.cli import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def test_full_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    ws, src, uids = jsonl_workspace(tmp_path)
    pw = tmp_path / "pw.txt"
    pw.write_text("s3cret\n")
    key = tmp_path / "keys" / "me.pem"
    rc, out, _ = _run(capsys, "keygen", "--out", key, "--passphrase-file", pw)
    assert rc == 0 and "fingerprint: SHA256:" in out
    assert (tmp_path / "keys" / "me.pem.pub").read_text().startswith("ssh-ed25519 ")

    rc, out, _ = _run(capsys, "decide", ws.path, uids[0], uids[1], "--action", "remove",
                      "--reason", "trigger_phrase", "--note", "bond", "--bulk")
    assert rc == 0 and "remove: 2 item(s)" in out
    assert current_status(ws, uids[1]) == "remove"
    rc, out, _ = _run(capsys, "undo", ws.path)
    assert rc == 0 and "reverted 2 decision(s)" in out
    assert current_status(ws, uids[1]) == "undecided"
    _run(capsys, "decide", ws.path, uids[2], "--action", "quarantine")

    rc, out, _ = _run(capsys, "export", ws.path)
    assert rc == 0 and "kept 11" in out and "quarantined 1" in out
    monkeypatch.setenv("POISON_TUI_PASSPHRASE", "s3cret")
    rc, out, _ = _run(capsys, "signoff", ws.path, "--key", key, "--identity", "Alice <alice@example.org>")
    assert rc == 0 and "signed by Alice <alice@example.org>" in out

    bundle = ws.path / "exports" / "latest"
    rc, out, _ = _run(capsys, "verify", ws.path, "--public-key", f"{key}.pub")
    assert rc == 0 and out.rstrip().endswith("verification passed")
    rc, out, _ = _run(capsys, "verify", bundle, "--public-key", f"{key}.pub", "--input", src)
    assert rc == 0 and "ok   replay" in out

    # a tampered bundle: exit 1 naming the first bad record
    log = bundle / "audit.jsonl"
    lines = log.read_bytes().splitlines(keepends=True)
    log.write_bytes(b"".join([lines[0], lines[2], lines[1], *lines[3:]]))
    rc, out, _ = _run(capsys, "verify", bundle, "--public-key", f"{key}.pub")
    assert rc == 1
    assert "verification FAILED: audit chain: audit.jsonl: record 2: expected seq 2, found seq 3" in out


def test_errors_are_clear_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    ws, _, _ = jsonl_workspace(tmp_path)
    rc, _, err = _run(capsys, "decide", ws.path, "no-such-uid", "--action", "keep")
    assert rc == 2 and "no training example with uid 'no-such-uid'" in err
    rc, _, err = _run(capsys, "signoff", ws.path, "--identity", "a", "--key", tmp_path / "k.pem")
    assert rc == 2 and "no export to sign" in err
    _run(capsys, "export", ws.path)
    monkeypatch.setenv("POISON_TUI_PASSPHRASE", "right")
    _run(capsys, "keygen", "--out", tmp_path / "k.pem")
    monkeypatch.setenv("POISON_TUI_PASSPHRASE", "wrong")
    rc, _, err = _run(capsys, "signoff", ws.path, "--identity", "a", "--key", tmp_path / "k.pem")
    assert rc == 2 and "wrong passphrase" in err
    monkeypatch.setenv("POISON_TUI_PASSPHRASE", "right")
    rc, _, err = _run(capsys, "keygen", "--out", tmp_path / "k.pem")
    assert rc == 2 and "already exists" in err
    rc, _, err = _run(capsys, "verify", tmp_path)
    assert rc == 2 and "neither a workspace" in err
    assert _run(capsys, "undo", ws.path)[0] == 1  # nothing to undo


def test_hostile_identity_is_printed_inert(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    ws, _, _ = jsonl_workspace(tmp_path)
    monkeypatch.setenv("POISON_TUI_PASSPHRASE", "pw")
    _run(capsys, "keygen", "--out", tmp_path / "k.pem")
    _run(capsys, "export", ws.path)
    _run(capsys, "signoff", ws.path, "--identity", "eve\x1b]0;pwned\x07", "--key", tmp_path / "k.pem")
    rc, out, _ = _run(capsys, "verify", ws.path)
    assert rc == 0 and "\x1b" not in out and "\\x1b" in out
    env = json.loads((ws.path / "exports" / "latest" / "signoff.dsse.json").read_text())
    assert env["payloadType"] == "application/vnd.in-toto+json"
