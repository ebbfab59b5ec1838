"""``poison-tui export WORKSPACE``: the cleaned dataset, excluded records and a manifest."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="write the cleaned dataset, quarantine.jsonl, removed.jsonl and manifest.json",
        description="Write the cleaned dataset in the input's own format (kept records byte for byte), "
                    "the quarantined and removed records with their decisions, and a manifest of "
                    "hashes. Every file is written atomically; the export is an audit record.",
    )
    p.add_argument("workspace", type=Path, metavar="WORKSPACE")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="export directory (default: WORKSPACE/exports/latest)")
    p.add_argument("--undecided", choices=("keep", "exclude"), default="keep",
                   help="whether suspects the default detector flagged but nobody decided stay in the "
                        "cleaned dataset (keep) or go to quarantine.jsonl (exclude)")
    p.add_argument("--actor", default=None)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.export import export
    from engine.workspace import Workspace
    from poison_tui.gov_cli import safe

    result = export(Workspace.open(args.workspace), args.out, args.undecided, args.actor)
    c = result.counts
    print(f"exported to {safe(result.out_dir)} (audit record {result.audit_seq})")
    print(f"  kept {c['output_records']:,}  quarantined {c['quarantine']:,}  removed {c['remove']:,}  "
          f"undecided {c['undecided']:,} ({c['undecided_excluded']:,} excluded)")
    for name, digest in sorted(result.files.items()):
        print(f"  {digest[:16]}  {safe(name)}")
    return 0
