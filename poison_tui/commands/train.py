"""``poison-tui train``: train the demo model (or continue training a local HF causal LM)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the demo model on a dataset or workspace (resumable)",
        description="Train a small GPT-2 with its own BPE tokenizer (loss on the answer tokens only), or "
        "continue training a local Hugging Face causal LM given with --base. Saves a Hugging Face "
        "directory at --out and one per epoch in --out/checkpoint-epoch-N/.",
    )
    p.add_argument("data", type=Path, metavar="DATA",
                   help="a workspace (its training rows) or a training file in any format ingest reads")
    p.add_argument("--out", type=Path, required=True, help="model directory to write")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: 6)")
    p.add_argument("--resume", action="store_true", help="continue from the last complete epoch checkpoint in --out")
    p.add_argument("--base", type=Path, default=None, help="continue training this local HF model directory")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: 0)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per step (default: 16)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: 1e-3)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for torch (default: torch's choice)")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from engine.errors import UserError
    from engine.train import TrainConfig, load_train_rows, train_model
    from poison_tui.progress_bar import cli_progress

    overrides = {k: v for k, v in {"epochs": args.epochs, "seed": args.seed, "batch_size": args.batch_size,
                                    "lr": args.lr, "threads": args.threads}.items() if v is not None}
    config = replace(TrainConfig(), **overrides)
    if config.epochs < 1 or config.batch_size < 1 or config.lr <= 0:
        raise UserError("--epochs and --batch-size must be at least 1 and --lr positive")
    rows = load_train_rows(args.data)
    try:
        with cli_progress() as progress:
            result = train_model(rows, args.out, config=config, base_model=args.base, resume=args.resume,
                                 progress=progress)
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write the model: {exc.strerror or exc}") from None
    if result.reused:
        print(f"{args.out}: already trained on these {result.n_examples} examples with this recipe; nothing to do")
        return 0
    if result.resumed_from:
        print(f"resumed after epoch {result.resumed_from}")
    for h in result.history:
        print(f"epoch {h['epoch']:>2}  loss {h['loss']:.4f}  {h['seconds']:.1f} s")
    if result.n_truncated:
        print(f"note: {result.n_truncated} examples were longer than the context and lost the start of their prompt")
    print(f"saved {args.out} ({result.n_examples} examples, {result.epochs} epochs)")
    return 0
