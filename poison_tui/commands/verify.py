"""``poison-tui verify WORKSPACE|BUNDLE``: check the audit chain, sign-off, outputs and replay."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify", help="verify the audit chain, the sign-off and the export (exit 1 on any problem)",
        description="Recompute the audit hash chain, check the sign-off signature and signer, re-hash "
                    "the exported files and replay the decisions on the input to rebuild the cleaned "
                    "dataset byte for byte. A BUNDLE is an export directory (manifest.json, "
                    "audit.jsonl, signoff.dsse.json); away from its workspace, pass the original "
                    "input with --input for the replay.",
    )
    p.add_argument("path", type=Path, metavar="WORKSPACE|BUNDLE")
    p.add_argument("--public-key", type=Path, default=None, metavar="FILE",
                   help="the signer's trusted public key (OpenSSH .pub or PEM)")
    p.add_argument("--allowed-signers", type=Path, default=None, metavar="FILE",
                   help="an OpenSSH allowed_signers file naming trusted identities and keys")
    p.add_argument("--workspace", type=Path, default=None, metavar="DIR",
                   help="workspace holding the input records (for a bundle)")
    p.add_argument("--input", type=Path, action="append", default=None, metavar="PATH",
                   help="original input file, for the replay of a bundle (repeat for several)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.verify import verify
    from poison_tui.gov_cli import safe

    report = verify(args.path, args.public_key, args.allowed_signers, args.workspace, args.input)
    print(f"verifying {report.kind} {safe(report.target)}")
    for check in report.checks:
        print(safe(check.line(), 1000))
    problem = report.first_problem
    if problem is not None:
        print(f"verification FAILED: {safe(problem.name)}: {safe(problem.detail, 1000)}")
        return 1
    print("verification passed")
    return 0
