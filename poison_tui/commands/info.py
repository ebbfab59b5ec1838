"""``poison-tui info WORKSPACE``: what a workspace holds."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="show the datasets, tasks, labels and query sets of a workspace",
                              description="Show what a workspace holds: datasets with formats and content "
                                          "hashes, counts per task and label, and query sets.")
    p.add_argument("workspace", type=Path, metavar="WORKSPACE")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.inventory import summarize
    from engine.workspace import Workspace

    summary = summarize(Workspace.open(args.workspace))
    if args.json:
        # ensure_ascii: data from the files cannot smuggle terminal escapes through JSON output
        print(json.dumps(summary, indent=2, ensure_ascii=True))
        return 0
    _print_tables(summary)
    return 0


def _print_tables(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from engine.formats.base import printable

    def cell(value: object, limit: int = 60) -> Text:
        # Text, never markup: task names and labels come from the user's data
        return Text(printable(str(value), limit))

    # piped output is not cut to 80 columns: hashes and paths stay whole for scripts and logs
    console = Console(file=sys.stdout, highlight=False, width=None if sys.stdout.isatty() else 200)
    console.print(Text(f"workspace {printable(s['workspace'], 200)} (schema v{s['schema_version']})"))
    t = Table(title="datasets", title_justify="left")
    for col in ("id", "role", "format", "records", "sha256", "path"):
        t.add_column(col, justify="right" if col in ("id", "records") else "left")
    for d in s["datasets"]:
        t.add_row(cell(d["id"]), cell(d["role"]), cell(d["format"]), cell(f"{d['n_records']:,}"),
                  cell(d["sha256"][:16]), cell(d["path"], 120))
    console.print(t)
    t = Table(title="tasks", title_justify="left")
    for col in ("role", "task", "examples", "labels"):
        t.add_column(col, justify="right" if col == "examples" else "left")
    for task in s["tasks"]:
        labels = ", ".join(f"{printable(k, 30)}: {v:,}" for k, v in sorted(task["labels"].items()))
        t.add_row(cell(task["role"]), cell(task["task"]), cell(f"{task['n']:,}"),
                  Text(labels or "(free text)"))
    console.print(t)
    if s["query_sets"]:
        t = Table(title="query sets", title_justify="left")
        for col in ("id", "queries", "sha256"):
            t.add_column(col, justify="right" if col == "queries" else "left")
        for q in s["query_sets"]:
            t.add_row(cell(q["id"], 80), cell(f"{q['n_queries']:,}"), cell(q["sha256"][:16]))
        console.print(t)
