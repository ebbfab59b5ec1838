"""``poison-tui decide`` and ``poison-tui undo``: record decisions from scripts."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    from engine.decisions import ACTIONS, REASON_CODES

    p = subparsers.add_parser(
        "decide", help="keep, quarantine or remove training examples by uid",
        description="Record a decision for each UID (committed, with its audit record, before the "
                    "command returns). Reasons: " + "; ".join(f"{k}: {v}" for k, v in REASON_CODES.items()),
    )
    p.add_argument("workspace", type=Path, metavar="WORKSPACE")
    p.add_argument("uids", nargs="+", metavar="UID")
    p.add_argument("--action", required=True, choices=ACTIONS)
    p.add_argument("--reason", choices=sorted(REASON_CODES), default=None)
    p.add_argument("--note", default=None)
    p.add_argument("--actor", default=None, help="who decides (default: $POISON_TUI_ACTOR or the OS user)")
    p.add_argument("--bulk", action="store_true", help="one bulk action: undone together")
    p.set_defaults(handler=run_decide)

    u = subparsers.add_parser(
        "undo", help="revert the most recent decision (or bulk action)",
        description="Append revert decisions restoring the status before the most recent decision "
                    "not yet reverted (a whole bulk action at once). History is kept.",
    )
    u.add_argument("workspace", type=Path, metavar="WORKSPACE")
    u.add_argument("--actor", default=None)
    u.set_defaults(handler=run_undo)


def run_decide(args: argparse.Namespace) -> int:
    from engine.decisions import decide, status_counts
    from engine.workspace import Workspace

    ws = Workspace.open(args.workspace)
    seqs = decide(ws, args.uids, args.action, args.reason, args.note, args.actor, args.bulk)
    counts = status_counts(ws)
    print(f"{args.action}: {len(seqs)} item(s) (decisions {seqs[0]}..{seqs[-1]})")
    print("  ".join(f"{k} {v}" for k, v in counts.items()))
    return 0


def run_undo(args: argparse.Namespace) -> int:
    from engine.decisions import undo
    from engine.workspace import Workspace

    ws = Workspace.open(args.workspace)
    seqs = undo(ws, args.actor)
    if not seqs:
        print("nothing to undo")
        return 1
    print(f"reverted {len(seqs)} decision(s) (revert decisions {seqs[0]}..{seqs[-1]})")
    return 0
