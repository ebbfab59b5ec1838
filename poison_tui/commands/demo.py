"""``poison-tui demo [--no-ui]``: the whole product on sample_data, cached after the first run."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo", help="train the demo model on sample_data, scan, detect, and open the review",
        description="Trains (or loads the cached) demo model on sample_data, scans and detects, then "
                    "opens the review app (or, with --no-ui, prints the top suspects). The workspace "
                    "and model live in the user cache dir ($POISON_TUI_CACHE or ~/.cache/poison-tui).")
    p.add_argument("--no-ui", action="store_true", help="print the top suspects instead of opening the app")
    p.add_argument("--sample", type=Path, default=None, metavar="DIR", help="sample data (default: sample_data/)")
    p.add_argument("--out", type=Path, default=None, metavar="DIR", help="where the demo workspace and model go")
    p.add_argument("--top", type=int, default=20, metavar="N")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.pipeline import SAMPLE_DIR, prepare_demo
    from engine.workspace import Workspace
    from poison_tui.commands.detect import print_summary
    from poison_tui.progress_bar import cli_progress

    with cli_progress() as progress:
        demo = prepare_demo(args.sample or SAMPLE_DIR, args.out, progress)
    print(f"workspace {demo.workspace}\nmodel {demo.model} (influence at {demo.checkpoint.name})")
    if args.no_ui:
        print_summary(Workspace.open(demo.workspace), args.top, cached=demo.result["cached"])
        return 0
    from poison_tui.app import run_review

    return int(run_review(demo.workspace) or 0)
