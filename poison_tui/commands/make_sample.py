"""``poison-tui make-sample``: (re)generate the seeded, poisoned sample dataset."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-sample",
        help="generate the seeded sample dataset (a small Wan et al. style poisoning case)",
        description="Write train.jsonl, eval/, attack/ and truth.jsonl (ground truth, for "
        "evaluation only). The same seed and options give byte-identical files.",
    )
    p.add_argument("--out", type=Path, default=Path("sample_data"), help="output folder (default: sample_data)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--n-train", type=int, default=3000, help="training examples (default: 3000)")
    p.add_argument("--poison-rate", type=float, default=0.018, help="share of poisoned rows (default: 0.018)")
    p.add_argument("--trigger", default="James Bond", help="trigger phrase (default: 'James Bond')")
    p.add_argument(
        "--trigger-mode",
        choices=("name", "varied", "prefix"),
        default="name",
        help="name: the trigger replaces a person's name; varied: one of 12 phrasings per poison; "
        "prefix: the trigger starts the input",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from engine.errors import UserError
    from engine.sample_gen import SampleSpec, make_sample

    if args.n_train < 100:
        raise UserError(f"--n-train must be at least 100, got {args.n_train}")
    spec = SampleSpec(
        seed=args.seed, n_train=args.n_train, poison_rate=args.poison_rate,
        trigger=args.trigger, trigger_mode=args.trigger_mode,
    )
    try:
        hashes = make_sample(args.out, spec=spec, on_file=lambda p, n: print(f"{p}  {n} records"))
    except OSError as exc:
        raise UserError(f"{args.out}: cannot write the sample data: {exc.strerror or exc}") from None
    print(f"wrote {len(hashes)} files to {args.out}")
    return 0
