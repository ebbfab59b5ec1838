"""``poison-tui detect WORKSPACE [--model DIR]``: rank suspects with every detector."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "detect", help="mine trigger candidates, confirm them on the model, scan, and rank suspects",
        description="Without --model: the no-model detectors (phrase-purity audit, label/sentiment "
                    "mismatch). With --model: also transformed, sentiment-guided and confirmed-trigger "
                    "query sets, one EK-FAC scan over all of them, and the influence detectors. "
                    "Cached by content: a repeated run with the same inputs computes nothing.")
    p.add_argument("workspace", type=Path, metavar="WORKSPACE")
    p.add_argument("--model", type=Path, default=None, metavar="DIR", help="the fine-tuned model under audit")
    p.add_argument("--checkpoint", type=Path, default=None, metavar="DIR",
                   help="score influence at this earlier checkpoint (poisons are not yet memorised there)")
    p.add_argument("--scorer", choices=("vader", "tfidf_lr"), default="vader", help="sentiment scorer")
    p.add_argument("--measurement", choices=("loss", "label_logprob"), default="label_logprob")
    p.add_argument("--normalize", choices=("none", "grad_norm"), default="grad_norm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--top", type=int, default=20, metavar="N", help="suspects to print (default 20)")
    from poison_tui.scale_options import add_scan_scale_arguments

    add_scan_scale_arguments(p)  # --prefilter/--candidates/--sample (issue #7)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from engine.pipeline import DetectConfig, detect
    from engine.workspace import Workspace
    from poison_tui.progress_bar import cli_progress

    ws = Workspace.open(args.workspace)
    config = DetectConfig(scorer=args.scorer, measurement=args.measurement, normalize=args.normalize,
                          seed=args.seed)
    from poison_tui.scale_options import scaled_detect

    with cli_progress() as progress:
        out = scaled_detect(ws, args, lambda uids, pf, prog: detect(ws, args.model, args.checkpoint, config, prog,
                                                                    uids=uids, prefilter=pf), progress)
    print_summary(ws, args.top, cached=out["cached"])
    return 0


def print_summary(ws, top: int, cached: bool = False) -> None:
    from engine.detect import top_suspects
    from engine.formats.base import printable
    from engine.triggers import REMOVAL_PREFIX

    runs = ws.conn.execute(
        "SELECT detector, rule, n_scored, n_flagged, is_default FROM detector_runs ORDER BY is_default DESC, detector"
    ).fetchall()
    if cached:
        print("cache hit: inputs unchanged since the last detection; nothing recomputed")
    for r in runs:
        mark = " (default)" if r["is_default"] else ""
        print(f"{r['detector']}{mark}: {r['n_scored']} scored, {r['n_flagged']} flagged")
    default = runs[0] if runs else None
    if default is None:
        return
    print(f"\nflagged-set rule ({default['detector']}): {default['rule']}")
    cands = ws.conn.execute(
        "SELECT phrase, kind, n_carriers, purity, q_value FROM trigger_candidates WHERE significant = 1 ORDER BY rank"
    ).fetchall()
    for c in cands:
        print(printable(f"trigger candidate {c['phrase']!r} ({c['kind']}): {c['n_carriers']} carriers, "
                        f"purity {c['purity']:.2f}, q={c['q_value']:.1e}", 200))
    latest = ws.conn.execute("SELECT model_fingerprint FROM trigger_confirmations ORDER BY created_at DESC LIMIT 1")
    fingerprint = (latest.fetchone() or [None])[0]
    for c in ws.conn.execute(
        "SELECT phrase, task, flip_rate, confirmed FROM trigger_confirmations WHERE model_fingerprint = ? "
        "ORDER BY confirmed DESC, flip_rate DESC LIMIT 10", (fingerprint,)
    ):
        state = "confirmed" if c["confirmed"] else "not confirmed"
        if c["task"].startswith(REMOVAL_PREFIX):  # removal_test rows: flip_rate is a margin share
            line = (f"  on the model: removing {c['phrase']!r} costs its carriers in {c['task'][len(REMOVAL_PREFIX):]} "
                    f"{c['flip_rate']:.0%} of their target margin, beyond a control removal ({state})")
        else:
            line = (f"  on the model: {c['phrase']!r} moves {c['flip_rate']:.0%} more of {c['task']} than a "
                    f"control insertion ({state})")
        print(printable(line, 200))
    print(f"\ntop {top} suspects ({default['detector']}):")
    print(f"{'rank':>4}  {'score':>9}  flag  {'task':<32}  label     input")
    for s in top_suspects(ws, default["detector"], top):
        # inputs are untrusted data: printable() escapes control characters
        print(f"{s['rank']:>4}  {s['score']:>9.3f}  {'*' if s['flagged'] else ' ':^4}  "
              f"{printable(s['task'], 32):<32}  {printable(s['output'], 8):<8}  {printable(s['input'], 70)}")
