"""``poison-tui evaluate WORKSPACE --truth FILE``: each detector's ranking against ground truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate", help="score every detector against a ground-truth file",
        description="AUROC, AUPRC, precision/recall/F1 of the flagged set and precision/recall at "
                    "1/2/5 %% of the data, for every detector stored in the workspace. Ground truth "
                    "is read here only, never by a detector.")
    p.add_argument("workspace", type=Path, metavar="WORKSPACE")
    p.add_argument("--truth", type=Path, required=True, metavar="FILE",
                   help="JSONL, one poisoned example per line, identified by uid, id or content_sha256")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the table as JSON")
    p.add_argument("--markdown", type=Path, metavar="FILE", help="also write the table as markdown")
    p.add_argument("--oracle", action="store_true",
                   help="first add the oracle ceiling: influence on queries carrying the true trigger (the "
                        "truth file's 'trigger' field), scored with the last detection scan's model and settings")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.atomic import atomic_write_bytes
    from engine.errors import UserError
    from engine.evaluate import evaluate_workspace, load_truth, to_markdown
    from engine.formats.base import printable
    from engine.workspace import Workspace

    ws = Workspace.open(args.workspace)
    truth = load_truth(args.truth)
    if args.oracle:
        from engine.evaluate import add_oracle
        from poison_tui.progress_bar import cli_progress

        with cli_progress() as progress:
            add_oracle(ws, args.truth, progress)
    rows = evaluate_workspace(ws, truth)
    if not rows:
        raise UserError(f"{args.workspace}: no detector scores yet; run 'poison-tui detect {args.workspace}' first")
    table = to_markdown(rows)
    # detector names and rules are ours, but print through printable all the same
    print("\n".join(printable(line, 10_000) for line in table.splitlines()))
    for r in rows:
        print(printable(f"{r['detector']}: {r['rule']}", 10_000))
    if not any(r["detector"] == "oracle_trigger_influence" for r in rows):
        print("oracle ceiling: not computed (pass --oracle with a truth file that names the trigger)")
    if args.markdown:
        atomic_write_bytes(args.markdown, table.encode("utf-8"))
    if args.json:
        payload = {"workspace": str(ws.path), "truth": str(args.truth), "n": rows[0]["n"],
                   "poisons": rows[0]["poisons"], "detectors": rows}
        atomic_write_bytes(args.json, json.dumps(payload, indent=2, allow_nan=True).encode("utf-8"))
    return 0
