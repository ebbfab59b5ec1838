"""``poison-tui verify-removal WORKSPACE``: does removing the flagged set remove the backdoor?"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "verify-removal", help="retrain without the flagged set and compare attack success and accuracy",
        description="Retrains the demo model (same recipe and seed) on the full data, on the data without "
                    "the default detector's flagged set, without the true poisons, and without a random "
                    "set of the same size, and reports attack success rate and clean accuracy of each.")
    p.add_argument("workspace", type=Path, metavar="WORKSPACE")
    p.add_argument("--truth", type=Path, required=True, metavar="FILE", help="ground truth (for the truth-cleaned arm)")
    p.add_argument("--attack", type=Path, nargs="+", required=True, metavar="FILE",
                   help="triggered held-out queries (gold: the true label), e.g. sample_data/attack/*.jsonl")
    p.add_argument("--detector", default=None, help="whose flagged set to remove (default: the default detector)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR",
                   help="where the retrained models go (default: WORKSPACE/models/verify-removal)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random-removal arm")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the table as JSON")
    p.set_defaults(handler=run)


def read_rows(paths: list[Path]) -> list[dict]:
    from engine.formats import read_dataset

    rows = []
    for path in paths:
        for r in read_dataset(path).records:
            rows.append({"definition": r.definition, "input": r.input, "output": r.output,
                         "label_space": r.label_space})
    return rows


def run(args: argparse.Namespace) -> int:
    from engine.atomic import atomic_write_bytes
    from engine.evaluate import load_truth, verify_removal
    from engine.workspace import Workspace
    from poison_tui.progress_bar import cli_progress

    ws = Workspace.open(args.workspace)
    truth = load_truth(args.truth)
    attack = read_rows(args.attack)
    out = args.out or ws.subdir("models") / "verify-removal"
    with cli_progress() as progress:
        table = verify_removal(ws, truth, attack, out, detector=args.detector, seed=args.seed, progress=progress)
    print(f"{'training set':<14} {'removed':>8} {'poisons':>8} {'ASR':>7} {'clean acc':>10}")
    for name, r in table.items():
        print(f"{name:<14} {r['removed']:>8} {r['poisons_removed']:>8} {r['asr']:>7.3f} {r['clean_acc']:>10.3f}")
    if args.json:
        atomic_write_bytes(args.json, json.dumps(table, indent=2).encode("utf-8"))
    return 0
