"""``poison-tui ingest TRAIN [--eval EVAL ...]``: read data into a workspace."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

FORMAT_CHOICES = ("auto", "sni-json", "sni-jsonl", "alpaca", "chat", "parquet", "csv", "hf-disk")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "ingest",
        help="read a training set and evaluation tasks into a workspace",
        description="Read a training set (and evaluation tasks: files, or folders with one task per "
                    "file) into a workspace. Strict by default: the first bad record stops the ingest "
                    "and nothing changes.",
    )
    p.add_argument("train", type=Path, metavar="TRAIN", help="training data: a file or a save_to_disk directory")
    p.add_argument("--eval", dest="evals", type=Path, action="append", default=[], metavar="EVAL",
                   help="evaluation task file or folder of task files (repeatable)")
    p.add_argument("--workspace", type=Path, default=None,
                   help="workspace directory (default: <train stem>.poison/ beside TRAIN)")
    p.add_argument("--format", dest="fmt", choices=FORMAT_CHOICES, default="auto", help="format of TRAIN")
    p.add_argument("--eval-format", choices=FORMAT_CHOICES, default="auto", help="format of the evaluation files")
    p.add_argument("--csv-map", default=None, metavar="FIELD=COL,...",
                   help="columns for csv/parquet/hf-disk, e.g. input=text,output=label,task=source "
                        "(fields: id, task, definition, input, output, label_space)")
    p.add_argument("--encoding", default="utf-8", help="text encoding of the input files (default utf-8)")
    p.add_argument("--lenient", action="store_true",
                   help="skip bad records, listing them in ingest-skipped.jsonl in the workspace")
    p.add_argument("--max-record-mb", type=float, default=1.0, help="largest record accepted (default 1 MB)")
    p.add_argument("--replace", action="store_true",
                   help="replace the workspace's training data with TRAIN (drops its scores)")
    p.set_defaults(handler=run)


def parse_column_map(text: str | None) -> dict[str, str] | None:
    from engine.errors import UserError

    if text is None:
        return None
    mapping: dict[str, str] = {}
    for part in filter(None, (s.strip() for s in text.split(","))):
        field, sep, column = part.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise UserError(f"--csv-map: expected FIELD=COLUMN, got '{part}'")
        mapping[field.strip()] = column.strip()
    return mapping or None


def run(args: argparse.Namespace) -> int:
    from engine.errors import UserError
    from engine.formats import ReadOptions
    from engine.formats.base import printable
    from engine.ingest import ingest
    from engine.workspace import default_workspace_for
    from poison_tui.progress_bar import cli_progress

    if args.max_record_mb <= 0:
        raise UserError("--max-record-mb must be positive")
    options = ReadOptions(encoding=args.encoding, lenient=args.lenient,
                          max_record_bytes=int(args.max_record_mb * 1_000_000),
                          column_map=parse_column_map(args.csv_map))
    workspace = args.workspace or default_workspace_for(args.train)
    with cli_progress() as progress:
        report = ingest(workspace, args.train, args.evals, args.fmt, eval_format=args.eval_format,
                        options=options, replace=args.replace, progress=progress)
    for w in report.warnings:
        print(f"warning: {printable(w, 2000)}", file=sys.stderr)
    if report.skipped:
        print(f"warning: --lenient skipped {len(report.skipped)} bad record(s); "
              f"they are listed in {report.skip_report}", file=sys.stderr)
    ws = printable(str(report.workspace), 500)
    print(f"workspace: {ws}")
    for d in report.datasets:
        tasks = printable(", ".join(d.tasks), 60)
        print(f"  {d.role:<5} {d.format:<9} {d.n_records:>8,} records  {len(d.tasks):>3} task(s)  "
              f"{d.status:<9} {printable(d.path, 500)}  [{tasks}]")
    print(f"next: poison-tui info {ws}")
    return 0
