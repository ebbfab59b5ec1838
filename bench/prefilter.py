"""Ablation of the TF-IDF prefilter: wall time, poisons kept, and AUPRC, with and without it.

    python bench/prefilter.py                  # the real-data poisoned set of bench/detect_real.py
    python bench/prefilter.py --data sample_data --quick
    python bench/prefilter.py --ks 0.05,0.1,0.2,0.4
    python bench/prefilter.py --work DIR --selection-only   # candidate table of an earlier run

Each configuration is one full screening (``engine.screen.screen``: ingest + query sets +
EK-FAC scan + detectors) in a fresh workspace, so every run pays its own factor fit and the
times compare like for like. The baseline (no prefilter) is measured in the same run, and
each prefiltered run is reported as a ratio against it. "Poisons kept" is the share of the
true poisons among the TF-IDF candidates; AUPRC is computed by ``engine.evaluate`` (unscored
examples rank below every scored one). Ground truth is read only here, after detection.

Data built from ``/work/shared/data`` stays outside the repository (a temporary folder or
``--work DIR``). The last line is
``prefilter k=<k> time_ratio=<t> poisons_kept=<p> auprc=<a> auprc_full=<f>`` for the
smallest K whose candidates keep every poison (else the largest K).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

# Detectors that read influence: the ones a prefilter can change.
INFLUENCE_DETECTORS = ("transform_stability", "sentiment_guided", "trigger_influence", "self_influence")


def real_data(work: Path, quick: bool) -> tuple[Path, Path, Path]:
    """The detection engineer's real-data poisoned set, "James Bond" family (bench/detect_real.py)."""
    import bench.detect_real as detect_real

    out = work / "data"
    detect_real.write(detect_real.build("phrase", quick, seed=0), out)
    return out / "train.jsonl", out / "eval", out / "truth.jsonl"


def folder_data(path: Path) -> tuple[Path, Path, Path]:
    train, evals, truth = path / "train.jsonl", path / "eval", path / "truth.jsonl"
    for p in (train, evals, truth):
        if not p.exists():
            sys.exit(f"{p}: missing (--data expects train.jsonl, eval/ and truth.jsonl)")
    return train, evals, truth


def train_model(train: Path, work: Path, epochs: int) -> tuple[Path, Path]:
    """The demo recipe (engine.train) on the training file; cached by content in ``work``."""
    from engine.ingest import ingest
    from engine.pipeline import DEMO_CHECKPOINT_EPOCH
    from engine.train import TrainConfig
    from engine.train import train_model as fit
    from engine.workspace import Workspace

    ws_path = work / "model-rows.poison"
    ingest(ws_path, train, replace=True)
    ws = Workspace.open(ws_path)
    rows = [dict(r) for r in ws.conn.execute(
        "SELECT uid, definition, input, output, label_space FROM examples WHERE role = 'train' "
        "ORDER BY dataset_id, ordinal")]
    ws.close()
    model_dir = work / f"model-{hashlib.sha256(train.read_bytes()).hexdigest()[:12]}"  # one per data version
    t0 = time.perf_counter()
    fit(rows, model_dir, config=TrainConfig(epochs=epochs, threads=torch.get_num_threads()), resume=True)
    print(f"model: {model_dir} ({time.perf_counter() - t0:.0f} s to train or reuse)", flush=True)
    checkpoint = model_dir / f"checkpoint-epoch-{DEMO_CHECKPOINT_EPOCH}"
    return model_dir, checkpoint if checkpoint.is_dir() else model_dir


def one_run(name: str, train: Path, evals: Path, truth: Path, model: Path, checkpoint: Path, work: Path,
            k: float | int | None) -> dict:
    from engine.evaluate import evaluate_workspace, load_truth, truth_mask
    from engine.prefilter import PrefilterSettings, scored_train_uids
    from engine.screen import ScreenOptions, screen
    from engine.workspace import Workspace

    ws_path = work / f"{name}.poison"
    shutil.rmtree(ws_path, ignore_errors=True)
    opts = ScreenOptions(train=train, evals=[evals], model=model, checkpoint=checkpoint, report=work / f"{name}.md",
                         workspace=ws_path, prefilter=None if k is None else PrefilterSettings(k))
    t0 = time.perf_counter()
    result = screen(opts)
    seconds = time.perf_counter() - t0

    ws = Workspace.open(ws_path)
    ids = load_truth(truth)
    poison = {u for u, is_p in truth_mask(ws, ids).items() if is_p}
    metrics = {row["detector"]: row for row in evaluate_workspace(ws, ids)}
    c = result.report["counts"]
    scored = set(scored_train_uids(ws, result.report["scan"]["run_key"]))
    default = result.report["detector"]["name"] if result.report["detector"] else None
    ws.close()
    return {
        "name": name, "k": k, "seconds": seconds, "n_train": c["train"], "n_scored": c["influence_scored"],
        "poisons": len(poison), "poisons_kept": len(poison & scored) / max(1, len(poison)),
        "default": default, "auprc": {d: m["auprc"] for d, m in metrics.items()},
        "flagged": c["flagged"], "stage_seconds": result.report["cache"]["stage_seconds"],
    }


def selection_table(ws_path: Path, truth: Path, ks: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.3)) -> None:
    """Poisons kept against the share of data scanned, per K, aggregate and query sets (no scan).

    Read from a copy of a workspace where the pipeline already registered its query sets (the
    full run). The last rows add what trigger confirmation registers once it confirms the
    trigger: the true "James Bond" put into the tasks' negative queries (evaluation only).
    """
    import random
    import sqlite3

    from bench.detect_real import inserter
    from engine.evaluate import load_truth, register_oracle_sets, truth_mask
    from engine.prefilter import PrefilterSettings, select
    from engine.workspace import Workspace

    copy = Path(tempfile.mkdtemp(prefix="poison-bench-selection-")) / "copy.poison"
    copy.mkdir()
    with sqlite3.connect(ws_path / "poison.db") as src, sqlite3.connect(copy / "poison.db") as dst:
        src.backup(dst)
    ws = Workspace.open(copy)
    poison = {u for u, p in truth_mask(ws, load_truth(truth)).items() if p}
    every = [r[0] for r in ws.conn.execute("SELECT id FROM query_sets ORDER BY id")]
    originals = [q for q in every if q.endswith("::original")]
    put = inserter("phrase", random.Random(0))
    triggered = register_oracle_sets(ws, lambda text: put(text)[0], "james_bond")
    groups = {"all registered sets": every, "original sets only": originals,
              "original + triggered sets": originals + triggered}
    print(f"\nTF-IDF candidates alone, {len(poison)} poisons: share of data kept / share of poisons kept "
          f"({len(every)} query sets registered by detection, {len(originals)} original)")
    print("| query sets | aggregate | " + " | ".join(f"K={k}" for k in ks) + " |")
    print("|---|---|" + "---|" * len(ks))
    for name, sets in groups.items():
        for agg in ("mean", "max"):
            cells = []
            for k in ks:
                sel = select(ws, PrefilterSettings(k, agg), sets)
                cells.append(f"{len(sel.uids) / sel.n_train:.2f} / {len(poison & set(sel.uids)) / len(poison):.2f}")
            print(f"| {name} | {agg} | " + " | ".join(cells) + " |")
    ws.close()
    shutil.rmtree(copy.parent, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="a sample_data-like folder instead of the real set")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--ks", default="0.05,0.1,0.2,0.4", help="candidates per query set: counts or fractions")
    ap.add_argument("--epochs", type=int, default=6, help="demo-model training epochs")
    ap.add_argument("--quick", action="store_true", help="smaller real set, K in 0.05,0.1")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--selection-only", action="store_true",
                    help="only the candidate table, from --work of an earlier run (no scan)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from engine.prefilter import parse_candidates

    ks = [parse_candidates(k) for k in ("0.05,0.1" if args.quick and args.ks == ap.get_default("ks") else args.ks)
          .split(",")]
    work = args.work or Path(tempfile.mkdtemp(prefix="poison-bench-prefilter-"))
    work.mkdir(parents=True, exist_ok=True)
    if args.selection_only:  # the candidate table alone, on the workspace of an earlier full run
        selection_table(work / "full.poison", (args.data or work / "data") / "truth.jsonl")
        return
    train, evals, truth = folder_data(args.data) if args.data else real_data(work, args.quick)
    model, checkpoint = train_model(train, work, args.epochs)

    runs = [one_run("full", train, evals, truth, model, checkpoint, work, None)]
    for k in ks:
        runs.append(one_run(f"k{k}", train, evals, truth, model, checkpoint, work, k))
    base = runs[0]
    detectors = [base["default"], *[d for d in INFLUENCE_DETECTORS if d in base["auprc"] and d != base["default"]]]
    print(f"\nprefilter ablation: {base['n_train']} training examples, {base['poisons']} poisons, "
          f"{torch.get_num_threads()} threads; baseline = no prefilter, measured in this run")
    head = ("| K | scored | time s | time / full | scoring stage s | poisons kept | "
            + " | ".join(f"AUPRC {d}" for d in detectors) + " |")
    print(head)
    print("|" + "---|" * (6 + len(detectors)))
    for r in runs:
        k = "none" if r["k"] is None else str(r["k"])
        cells = " | ".join(f"{r['auprc'].get(d, float('nan')):.3f}" for d in detectors)
        print(f"| {k} | {r['n_scored']} | {r['seconds']:.1f} | {r['seconds'] / base['seconds']:.2f} | "
              f"{r['stage_seconds'].get('scores', 0.0):.1f} | {r['poisons_kept']:.3f} | {cells} |")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=2, default=str))
    selection_table(work / "full.poison", truth)
    pf = runs[1:]
    pick = next((r for r in pf if r["poisons_kept"] >= 1.0), pf[-1])
    d = base["default"]
    print(f"prefilter k={pick['k']} time_ratio={pick['seconds'] / base['seconds']:.2f} "
          f"poisons_kept={pick['poisons_kept']:.3f} auprc={pick['auprc'].get(d, float('nan')):.3f} "
          f"auprc_full={base['auprc'].get(d, float('nan')):.3f}")


if __name__ == "__main__":
    main()
