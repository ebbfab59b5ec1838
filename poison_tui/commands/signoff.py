"""``poison-tui signoff WORKSPACE``: sign the export (in-toto Statement in a DSSE envelope)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "signoff", help="sign the export: an in-toto statement over its files and the audit head",
        description="Show what will be signed, ask for the signer's identity and sign an in-toto "
                    "Statement naming every exported file's sha256 and the audit log head, in a "
                    "DSSE envelope (signoff.dsse.json in the export directory, beside a copy of the "
                    "audit log). The sign-off is itself an audit record.",
    )
    p.add_argument("workspace", type=Path, metavar="WORKSPACE")
    key = p.add_mutually_exclusive_group()
    key.add_argument("--key", type=Path, default=None, metavar="PATH",
                     help="key from 'poison-tui keygen' (default: ~/.config/poison-tui/signing_key.pem)")
    key.add_argument("--ssh-key", type=Path, default=None, metavar="PATH",
                     help="an OpenSSH private key, signed with ssh-keygen -Y sign -n poison-tui "
                          "(PATH.pub must exist)")
    p.add_argument("--identity", default=None, help="the signer's name or e-mail (asked when omitted)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="the export directory (default: WORKSPACE/exports/latest)")
    p.add_argument("--passphrase-file", type=Path, default=None, metavar="FILE",
                   help="passphrase of --key (else $POISON_TUI_PASSPHRASE, else a prompt)")
    p.add_argument("--actor", default=None)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import UserError
    from engine.signing import Signer, default_key_path, signoff, signoff_summary
    from engine.workspace import Workspace
    from poison_tui.gov_cli import read_passphrase, safe

    ws = Workspace.open(args.workspace)
    summary = signoff_summary(ws, args.out)
    c = summary.counts
    print(f"export {safe(summary.out_dir)}")
    print(f"  kept {c['output_records']:,}  quarantined {c['quarantine']:,}  removed {c['remove']:,}  "
          f"undecided {c['undecided']:,}")
    print(f"  audit head: record {summary.audit_head[0]}, {summary.audit_head[1]}")
    print(f"  model: {safe(summary.model_fingerprint)}")
    for name, digest in sorted(summary.files.items()):
        print(f"  {digest[:16]}  {safe(name)}")
    identity = args.identity
    if identity is None:
        if not sys.stdin.isatty():
            raise UserError("pass --identity (no terminal to ask on)")
        identity = input("signer identity (name or e-mail): ")
    if args.ssh_key is not None:
        signer = Signer(args.ssh_key, ssh=True)
    else:
        path = args.key or default_key_path()
        if not path.exists():
            raise UserError(f"{path}: no signing key; create one with 'poison-tui keygen' or pass --ssh-key")
        signer = Signer(path, read_passphrase(args.passphrase_file))
    result = signoff(ws, identity, signer, args.out, args.actor)
    print(f"signed by {safe(identity)} with {result.key_fingerprint}: {safe(result.envelope_path)} "
          f"(audit record {result.audit_seq})")
    return 0
