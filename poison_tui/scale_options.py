"""``--prefilter``, ``--candidates`` and ``--sample`` for ``poison-tui scan`` (and ``screen``).

The scan command owns its own flags; it calls ``add_scan_scale_arguments(parser)`` and hands
its scan call to ``scaled_scan``, which picks the uids (TF-IDF candidates, a stratified trial
sample, or everything), records the prefilter, and prints the trial's cost estimate.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from engine.prefilter import PrefilterSettings
from engine.progress import ProgressFn
from engine.workspace import Workspace

# Per-example progress stages of a scan (they scale with the number of training examples);
# every other stage (factors, query gradients) is a one-off, cached for the full run.
PER_EXAMPLE_STAGES = ("scores",)

ScanCall = Callable[[Sequence[str] | None, ProgressFn], str]  # (uids, progress) -> run_key
DetectCall = Callable[[Sequence[str] | None, PrefilterSettings | None, ProgressFn], dict]  # engine.pipeline.detect


def add_prefilter_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("prefilter (score only the training examples that look like the queries)")
    g.add_argument("--prefilter", choices=("tfidf",), default=None,
                   help="rank training examples by TF-IDF similarity to each evaluation task's queries and "
                        "scan only the top candidates; the rest are marked 'not scored', never clean")
    g.add_argument("--candidates", default=None, metavar="K|FRACTION",
                   help="candidates per evaluation task: a count (500), a fraction (0.2) or a percentage "
                        "(20%%); the union over tasks is scanned (default with --prefilter: 0.2)")


def add_scan_scale_arguments(p: argparse.ArgumentParser) -> None:
    add_prefilter_arguments(p)
    p.add_argument("--sample", type=int, default=None, metavar="N",
                   help="trial run: scan a stratified sample of N examples (per task and label), print the "
                        "time per example, an ETA for the full set and the suspects so far; the full run "
                        "reuses the sample's scores")
    p.add_argument("--sample-seed", type=int, default=0, help="seed of the --sample draw (default 0)")


def prefilter_settings(args: argparse.Namespace) -> PrefilterSettings | None:
    from engine.errors import UserError
    from engine.prefilter import parse_candidates

    if args.prefilter is None:
        if args.candidates is not None:
            raise UserError("--candidates needs --prefilter tfidf")
        return None
    return PrefilterSettings(parse_candidates(args.candidates) if args.candidates is not None else 0.2)


def scaled_scan(ws: Workspace, args: argparse.Namespace, call: ScanCall, progress: ProgressFn,
                out: TextIO | None = None, detected: bool = False) -> str:
    """Run the scan the flags ask for and return its run key (prints the trial summary).

    ``detected``: ``call`` also ran the detectors, so the trial's suspects are theirs.
    """
    out = out or sys.stdout  # looked up per call: tests and callers swap sys.stdout
    from engine import prefilter as pf
    from engine.sampling import (
        StageClock,
        estimate,
        format_duration,
        strata_counts,
        training_rows,
    )

    rows = training_rows(ws)
    selection, uids = _pick(ws, args, rows)
    selection_id = None
    if selection is not None:
        selection_id = pf.record(ws, selection)
        print(f"prefilter: {len(selection.uids)} of {selection.n_train} training examples are candidates "
              f"({selection.n_skipped} will be marked not scored)", file=out)
    sample = getattr(args, "sample", None)
    clock = StageClock(progress)
    run_key = call(uids, clock)
    if selection_id is not None:
        pf.attach_run(ws, selection_id, run_key)
    if sample is not None:
        n_target = len(rows) if selection is None else len(selection.uids)
        unscored = pf.unscored_train_uids(ws, run_key)
        if selection is not None:
            kept = set(selection.uids)
            unscored = [u for u in unscored if u in kept]
        computed = sum(clock.done(s) for s in PER_EXAMPLE_STAGES)
        est = estimate(clock, PER_EXAMPLE_STAGES, computed, n_target, len(unscored))
        print(f"trial: {len(uids)} examples sampled across {len(strata_counts(rows, uids))} task/label strata; "
              f"{computed} computed now, the rest read from the cache", file=out)
        print(f"  time per example: {format_duration(est.per_example_s)} "
              f"(plus one-off work: {format_duration(est.fixed_s)} for model load, factors and queries; "
              "the factors are cached)", file=out)
        print(f"  ETA for the full set: {format_duration(est.eta_s)} for {est.n_remaining} examples not yet scored",
              file=out)
        _print_suspects(ws, run_key, uids, out, detected)
    return run_key


def _pick(ws: Workspace, args: argparse.Namespace, rows: list) -> tuple[Any, list[str] | None]:
    """(the prefilter's selection or None, the uids to scan or None for all). Deterministic."""
    from engine import prefilter as pf
    from engine.sampling import stratified_sample

    settings = prefilter_settings(args)
    selection = pf.select(ws, settings) if settings is not None else None
    uids = None if selection is None else selection.uids
    if getattr(args, "sample", None) is not None:
        candidates = None if uids is None else set(uids)
        pool = rows if candidates is None else [r for r in rows if r.uid in candidates]
        uids = stratified_sample(pool, args.sample, seed=args.sample_seed)
    return selection, uids


def requested_uids(ws: Workspace, args: argparse.Namespace) -> list[str] | None:
    """The uids ``scaled_scan`` scans, recomputed without recording: for torchrun's other ranks,
    which must scan exactly what rank 0 scans."""
    from engine.sampling import training_rows

    return _pick(ws, args, training_rows(ws))[1]


def scaled_detect(ws: Workspace, args: argparse.Namespace, call: DetectCall, progress: ProgressFn,
                  out: TextIO | None = None) -> dict:
    """``poison-tui detect`` with the scale flags. ``call(uids, prefilter, progress)`` runs the pipeline,
    which picks the prefilter's candidates itself once every query set is registered."""
    from engine import prefilter as pf
    from engine.errors import UserError

    out = out or sys.stdout
    settings = prefilter_settings(args)
    if (settings is not None or args.sample is not None) and args.model is None:
        raise UserError("--prefilter, --candidates and --sample restrict the influence scan: they need --model")
    if settings is not None and args.sample is not None:
        raise UserError("run the --sample trial without --prefilter (the trial estimates the full scan)")
    if args.sample is None:
        result = call(None, settings, progress)
        if settings is not None and result.get("run_key"):
            rec = pf.latest(ws, result["run_key"])
            if rec is not None:
                print(f"prefilter: {rec['n_candidates']} of {rec['n_train']} training examples were candidates "
                      f"({rec['n_train'] - rec['n_candidates']} marked not scored)", file=out)
        return result
    trial: dict = {}

    def scan_call(uids: Sequence[str] | None, prog: ProgressFn) -> str:
        trial.update(call(uids, None, prog))
        return trial["run_key"]

    scaled_scan(ws, args, scan_call, progress, out, detected=True)
    return trial


def suspects_so_far(ws: Workspace, run_key: str, uids: Sequence[str]) -> list[tuple[str, float]]:
    """Influence outliers among the sampled examples: (uid, mean robust z), most suspicious first.

    The detectors' own outlier rule (``engine.detect``) on the mean standardised influence over
    the query sets, computed over the sample only and stored nowhere: a preview, not a ranking.
    """
    import numpy as np

    from engine.detect import influence_by_set, outlier_flags

    uids = list(uids)
    sets = influence_by_set(ws, run_key, uids) if uids else {}
    if not sets:
        return []
    mean = np.mean(list(sets.values()), axis=0)
    scores = {u: float(v) for u, v in zip(uids, mean, strict=True)}
    return sorted(((u, scores[u]) for u in outlier_flags(scores)), key=lambda t: -t[1])


def _print_suspects(ws: Workspace, run_key: str, uids: Sequence[str], out: TextIO, detected: bool) -> None:
    from engine.detect import OUTLIER_RULE
    from engine.formats.base import printable

    default = ws.conn.execute("SELECT detector FROM detector_runs WHERE is_default = 1 AND run_key = ?",
                              (run_key,)).fetchone() if detected else None
    if default is not None:
        sampled = set(uids)
        found = [(r[0], r[1]) for r in ws.conn.execute(
            "SELECT uid, score FROM detector_scores WHERE detector = ? AND flagged = 1 ORDER BY rank", (default[0],)
        ) if r[0] in sampled]
        how = f"flagged by the default detector {default[0]}"
    else:
        found = suspects_so_far(ws, run_key, uids)
        how = f"{OUTLIER_RULE}, on mean influence"
    print(f"  suspects so far: {len(found)} of the {len(uids)} sampled ({how})", file=out)
    for uid, score in found[:5]:
        row = ws.conn.execute("SELECT task, output, input FROM examples WHERE uid = ?", (uid,)).fetchone()
        print(f"    {uid}  score={score:+.2f}  {printable(row[0], 40)} -> {printable(row[1], 20)}: "
              f"{printable(row[2], 60)}", file=out)
