"""``poison-tui scan WORKSPACE --model DIR``: EK-FAC influence of every training example on every query set."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from engine.influence.scanner import ScanReport, ScanSettings
    from engine.progress import ProgressFn
    from engine.workspace import Workspace


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "scan", help="compute EK-FAC influence of the training examples on the evaluation query sets",
        description="Compute (or reuse from the workspace cache) the EK-FAC influence of every training example "
                    "on every query set. Runs under torchrun to use several processes or GPUs: "
                    "'torchrun --standalone --nproc_per_node N -m poison_tui.cli scan ...' (gloo on CPU, "
                    "NCCL on GPU; rank 0 writes the results).",
    )
    p.add_argument("workspace", type=Path, metavar="WORKSPACE")
    p.add_argument("--model", type=Path, default=None, metavar="DIR",
                   help="fine-tuned model: a Hugging Face directory with safetensors weights, or a .gguf file "
                        "(default: the workspace's model_path)")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                   help="score at this (earlier) checkpoint directory instead of --model")
    p.add_argument("--modules", nargs="+", default=None, metavar="PATTERN",
                   help="layers to track: glob patterns or name parts (default: every Linear/Conv1D but the head)")
    p.add_argument("--last-blocks", type=int, default=None, metavar="K", help="track only the last K blocks")
    p.add_argument("--damping", default="auto", metavar="X",
                   help="damping added to the curvature: a number, or 'auto' = 0.1 x mean eigenvalue per layer")
    p.add_argument("--fisher", choices=("true", "empirical"), default="true",
                   help="curvature from labels sampled from the model (true, default) or the dataset's (empirical)")
    p.add_argument("--measurement", choices=("loss", "label_logprob"), default="loss",
                   help="what influence is measured on: the answer loss, or the log-probability of the gold "
                        "label among the task's labels")
    p.add_argument("--normalize", choices=("none", "grad_norm"), default="none",
                   help="grad_norm: divide each example's score by its gradient norm under the same "
                        "preconditioner (relative influence)")
    p.add_argument("--query-sets", default="*", metavar="PATTERN", help="glob over query set ids (default: all)")
    p.add_argument("--factor-examples", type=int, default=None, metavar="N",
                   help="training examples used to fit the curvature (default: max(256, 10%%))")
    p.add_argument("--self-influence", action="store_true", help="also store each example's self-influence")
    p.add_argument("--batch-size", type=int, default=16, metavar="B")
    p.add_argument("--chat-template", action="store_true",
                   help="wrap each prompt in the tokenizer's chat template (for chat-tuned models)")
    p.add_argument("--device", default=None, metavar="DEV", help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    p.add_argument("--dtype", choices=("float32", "bfloat16"), default=None,
                   help="model precision (default: float32 on CPU, bfloat16 on CUDA); statistics stay float32/64")
    p.add_argument("--max-length", type=int, default=None, metavar="T",
                   help="truncate examples to T tokens (default: the model's context); the prompt is cut first")
    from poison_tui.scale_options import add_scan_scale_arguments

    add_scan_scale_arguments(p)
    p.set_defaults(handler=run)


def settings_from_args(args: argparse.Namespace) -> ScanSettings:
    from engine.errors import UserError
    from engine.influence.scanner import ScanSettings

    damping = None
    if str(args.damping).lower() != "auto":
        try:
            damping = float(args.damping)
        except ValueError:
            raise UserError(f"--damping must be a number or 'auto' (got {args.damping!r})") from None
    return ScanSettings(
        modules=tuple(args.modules) if args.modules else None, last_blocks=args.last_blocks, damping=damping,
        fisher=args.fisher, measurement=args.measurement, normalize=args.normalize,
        self_influence=args.self_influence, factor_examples=args.factor_examples, query_sets=args.query_sets,
        batch_size=args.batch_size, max_length=args.max_length, device=args.device, dtype=args.dtype,
        chat_template=args.chat_template,
    )


def run(args: argparse.Namespace) -> int:
    from engine.errors import UserError
    from engine.influence import last_report, scan
    from engine.influence.distributed import from_env
    from engine.progress import CancelToken, no_progress
    from engine.workspace import Workspace
    from poison_tui.progress_bar import cli_progress
    from poison_tui.scale_options import scaled_scan

    ws = Workspace.open(args.workspace)
    model = args.checkpoint or args.model or (Path(p) if (p := ws.get_meta("model_path")) else None)
    if model is None:
        raise UserError("no model: pass --model DIR (the fine-tuned model to scan)")
    settings = settings_from_args(args)
    token = CancelToken()
    main = from_env().is_main

    def call(uids: list[str] | None, progress: ProgressFn) -> str:
        return scan(ws, model, settings, progress, token, uids=uids)

    if not main:  # other torchrun ranks compute their shard silently; rank 0 reports
        from poison_tui.scale_options import requested_uids

        scan(ws, model, settings, no_progress, token, uids=requested_uids(ws, args))  # same uids as rank 0
        return 0
    with cli_progress() as progress:
        run_key = scaled_scan(ws, args, call, progress)
    _summary(ws, run_key, last_report())
    return 0


def _summary(ws: Workspace, run_key: str, report: ScanReport) -> None:
    n_rows = dict(ws.conn.execute(
        "SELECT query_set_id, COUNT(*) FROM influence WHERE run_key = ? GROUP BY query_set_id", (run_key,)
    ).fetchall())
    print(f"scan {run_key}: {report.n_train} training examples, {len(n_rows)} query sets")
    if report.n_scored == 0:
        print("  cache hit: every requested score was already in the workspace; nothing computed")
    else:
        print(f"  scored {report.n_scored} examples against {len(report.sets_scored)} query set(s) in one pass"
              f" ({len(report.sets_cached)} set(s) reused from the cache)")
        print(f"  factors: {'reused' if report.factors_cached else 'computed'} ({report.factors_path})")
    if report.zero_curvature_layers:
        print(f"  {len(report.zero_curvature_layers)} layer(s) have zero gradient on every example and do not count: "
              + ", ".join(report.zero_curvature_layers[:4]))
    if report.n_truncated:
        print(f"  {report.n_truncated} example(s) longer than the model's context: prompts truncated from the left")
    if report.n_without_label_space:
        print(f"  {report.n_without_label_space} example(s) without a label space were measured with the plain loss")
    from engine.formats.base import printable

    for set_id, n in sorted(n_rows.items()):
        print(f"  {printable(set_id)}: {n} examples scored")  # ids come from the data: no escapes
