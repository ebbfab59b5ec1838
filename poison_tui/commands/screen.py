"""``poison-tui screen TRAIN --eval ... --model ... --report FILE``: unattended screening."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EPILOG = """\
exit codes:
  0  nothing flagged (the report still lists any examples that were not scored)
  1  suspects flagged: see the report
  2  error (bad input, missing model, ...): nothing is reported as clean

Re-running on an unchanged dataset reuses every cached score and finishes in seconds; a
training file with new rows scores only those rows (a changed file is re-ingested in place,
keeping the scores of the rows whose content did not change; a workspace that holds review
decisions refuses that, so screen into its own --workspace). The report is written as
markdown (FILE) and JSON (FILE with .json), each atomically. Operator's guide: docs/checklist.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    from poison_tui.scale_options import add_prefilter_arguments

    p = subparsers.add_parser(
        "screen",
        help="ingest + scan + detect without a terminal, and write a report (exit 1 when suspects are flagged)",
        description="Screen a training set non-interactively: ingest it with its evaluation tasks, "
                    "scan it with the model (EK-FAC influence, cached), run the detectors and write a "
                    "markdown + JSON report of the flagged examples, the settings and the content hashes.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("train", type=Path, metavar="TRAIN", help="training data file (or save_to_disk directory)")
    p.add_argument("--eval", dest="evals", type=Path, action="append", default=[], required=True,
                   metavar="EVAL", help="evaluation task file or folder of task files (repeatable)")
    p.add_argument("--model", type=Path, required=True, help="the fine-tuned model: HF directory or .gguf file")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                   help="score influence at this earlier checkpoint of the model (earlier checkpoints "
                        "separate poisons better; the model itself still confirms triggers)")
    p.add_argument("--report", type=Path, required=True, metavar="FILE",
                   help="markdown report path; the JSON report goes beside it (FILE.json / .json suffix)")
    p.add_argument("--workspace", type=Path, default=None,
                   help="workspace directory (default: <train stem>.poison/ beside TRAIN)")
    p.add_argument("--format", dest="fmt", default="auto", help="format of TRAIN (as for ingest)")
    p.add_argument("--eval-format", default="auto", help="format of the evaluation files")
    add_prefilter_arguments(p)
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.errors import Cancelled, UserError
    from engine.screen import ScreenOptions, screen
    from poison_tui.scale_options import prefilter_settings

    opts = ScreenOptions(
        train=args.train, evals=list(args.evals), model=args.model, report=args.report,
        workspace=args.workspace, fmt=args.fmt, eval_format=args.eval_format, checkpoint=args.checkpoint,
        prefilter=prefilter_settings(args),
    )
    try:
        if args.quiet:
            result = screen(opts)
        else:
            from poison_tui.progress_bar import cli_progress

            with cli_progress() as progress:
                result = screen(opts, progress)
    except (UserError, Cancelled, KeyboardInterrupt):
        raise  # the CLI prints these (exit 2 for errors)
    except Exception as exc:
        # exit 1 means "suspects flagged", so no failure may leak out as Python's exit 1
        print(f"poison-tui screen: error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    c = result.report["counts"]
    print(f"screened {c['train']} training examples: {c['flagged']} flagged, "
          f"{c['influence_not_scored']} not scored")
    print(f"report: {result.md_path} and {result.json_path}")
    if c["influence_not_scored"]:
        print(f"warning: {c['influence_not_scored']} examples have no influence score and were not checked "
              "by influence (see 'Not scored' in the report)", file=sys.stderr)
    return result.exit_code
