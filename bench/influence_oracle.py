"""Why is influence on triggered queries weak on the demo? A small grid (issue #8).

    python bench/influence_oracle.py --workspace DEMO/demo.poison --model DEMO/model-XXXX \
        [--clean 600] [--out /tmp/h8/grid]

Works on a *copy* of the demo workspace (``--out``), never on the original. It registers the
oracle query sets (queries of the polar eval tasks with the TRUE trigger inserted, from
``sample_data/truth.jsonl``: evaluation only) in two target-label conventions:

* ``oracle:truth``      answered with the label the trigger forces (positive): score as is;
* ``oracle:truth_gold`` the same texts answered with their original (negative) label: score negated.

plus, for the oracle and every confirmed-trigger set, the same queries WITHOUT the trigger
(``oracle_base:``/``trigger_base:``, same target) for a contrast column (triggered minus
untriggered influence, i.e. influence on log p(target | x + trigger) - log p(target | x)),

and scans, for each checkpoint (epoch 1, 2, 3, final) and measurement (loss, label_logprob),
every training poison plus ``--clean`` random clean rows (the rest are not scored, to keep each
run short). ``normalize`` none vs grad_norm come from the same scan: the stored grad_norm scores
times sqrt(self-influence) are the raw ones. For each cell it prints AUROC / AUPRC of the oracle
and of ``trigger_influence`` (the confirmed-candidate sets the pipeline registered), each the mean
of the per-set robust z-scores as in ``engine.detect``. Baseline: the current pipeline default
(ep2, label_logprob, grad_norm, oracle:truth), measured in the same run.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.detect import robust_z
from engine.evaluate import auprc, auroc, load_truth, register_oracle_sets, truth_mask, truth_triggers
from engine.influence import scan
from engine.influence.scanner import ScanSettings
from engine.triggers import insert_trigger
from engine.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]


def register_gold_convention(ws: Workspace, triggers: list[str]) -> None:
    """The same triggered texts as ``oracle:truth`` (same rng stream), answered with the gold label."""
    from engine.queries import register_query_set

    for set_id in [r[0] for r in ws.conn.execute("SELECT id FROM query_sets WHERE variant = 'oracle:truth'")]:
        task = set_id.split("::")[0]
        trig = [dict(r) for r in ws.conn.execute(
            "SELECT source_uid, definition, input, label_space FROM queries WHERE query_set_id = ? ORDER BY idx",
            (set_id,))]
        gold = {r[0]: r[1] for r in ws.conn.execute(
            "SELECT source_uid, output FROM queries WHERE query_set_id = ?", (f"{task}::original",))}
        rows = [{**r, "output": gold[r["source_uid"]], "changed": True} for r in trig]
        register_query_set(ws, task, "oracle:truth_gold", rows, {"oracle": "gold-label convention"})


def register_untriggered(ws: Workspace) -> None:
    """Contrast sets: each triggered set's queries WITHOUT the trigger (their original input),
    answered with the same target label. Influence on the triggered set minus influence on this
    one is the influence on log p(target | x + trigger) - log p(target | x): the trigger's own
    effect, with the generic "supports this label token" component cancelled."""
    from engine.queries import register_query_set

    for set_id, variant in ws.conn.execute(
            "SELECT id, variant FROM query_sets WHERE variant = 'oracle:truth' OR variant LIKE 'trigger:%'").fetchall():
        task = set_id.split("::")[0]
        orig = {r[0]: r[1] for r in ws.conn.execute(
            "SELECT source_uid, input FROM queries WHERE query_set_id = ?", (f"{task}::original",))}
        rows = [{**dict(r), "input": orig[r["source_uid"]], "changed": True} for r in ws.conn.execute(
            "SELECT source_uid, definition, input, output, label_space FROM queries WHERE query_set_id = ? "
            "ORDER BY idx", (set_id,))]
        register_query_set(ws, task, f"{variant.split(':')[0]}_base:{variant.split(':', 1)[1]}", rows,
                           {"base_of": set_id})


def vectors(ws: Workspace, run_key: str, uids: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    pos = {u: i for i, u in enumerate(uids)}
    sets: dict[str, np.ndarray] = {}
    # only the current version of each existing set (as engine.detect reads them)
    for qs, uid, score in ws.conn.execute(
            "SELECT i.query_set_id, i.uid, i.score FROM influence i JOIN query_sets q ON q.id = i.query_set_id "
            "AND q.sha256 = i.query_set_sha256 WHERE i.run_key = ?", (run_key,)):
        if uid in pos:
            sets.setdefault(qs, np.full(len(uids), np.nan))[pos[uid]] = score
    selfs = np.full(len(uids), np.nan)
    for uid, s in ws.conn.execute("SELECT uid, score FROM self_influence WHERE run_key = ?", (run_key,)):
        if uid in pos:
            selfs[pos[uid]] = s
    return sets, selfs


def detector(sets: dict[str, np.ndarray], variant: str, sign: float, scale: np.ndarray,
             contrast: bool = False) -> np.ndarray | None:
    names = [k for k in sets if k.split("::", 1)[1] == variant or
             (variant == "trigger:*" and k.split("::", 1)[1].startswith("trigger:"))]
    if not names:
        return None

    def vec(k: str) -> np.ndarray:
        v = sets[k]
        if contrast:  # minus the same queries without the trigger (register_untriggered)
            task, var = k.split("::", 1)
            kind, rest = var.split(":", 1)
            v = v - sets[f"{task}::{kind}_base:{rest}"]
        return robust_z(sign * v * scale)

    return np.mean([vec(k) for k in names], axis=0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--model", type=Path, required=True)
    ap.add_argument("--truth", type=Path, default=ROOT / "sample_data" / "truth.jsonl")
    ap.add_argument("--clean", type=int, default=600)
    ap.add_argument("--epochs", default="1,2,3,final")
    ap.add_argument("--measurements", default="label_logprob,loss")
    ap.add_argument("--out", type=Path, default=Path("/tmp/h8/grid"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    args.out.mkdir(parents=True, exist_ok=True)
    ws_path = args.out / "ws.poison"
    if not ws_path.exists():
        shutil.copytree(args.workspace, ws_path)
    ws = Workspace.open(ws_path)
    truth = truth_mask(ws, load_truth(args.truth))
    triggers = truth_triggers(args.truth)
    if not ws.conn.execute("SELECT 1 FROM query_sets WHERE variant = 'oracle:truth'").fetchone():
        rng = np.random.default_rng(0)  # the stream add_oracle uses
        register_oracle_sets(ws, lambda t: insert_trigger(t, "ngram", str(rng.choice(triggers)), rng), "truth")
        register_gold_convention(ws, triggers)
    if not ws.conn.execute("SELECT 1 FROM query_sets WHERE variant = 'oracle_base:truth'").fetchone():
        register_untriggered(ws)
    poisons = sorted(u for u, p in truth.items() if p)
    clean = sorted(u for u, p in truth.items() if not p)
    rng = np.random.default_rng(0)
    uids = poisons + sorted(rng.choice(clean, size=min(args.clean, len(clean)), replace=False).tolist())
    y = np.array([truth[u] for u in uids])
    print(f"scored: {len(poisons)} poisons + {len(uids) - len(poisons)} random clean rows "
          f"(base rate {y.mean():.3f}); {torch.get_num_threads()} threads")

    base = ScanSettings(measurement="label_logprob", normalize="grad_norm", self_influence=True,
                        query_sets="*::[ot]r*[:_]*", seed=0)  # oracle:* and trigger:* sets only
    rows = []
    for ep in args.epochs.split(","):
        model = args.model if ep == "final" else args.model / f"checkpoint-epoch-{ep}"
        for meas in args.measurements.split(","):
            t0 = time.time()
            key = scan(ws, model, replace(base, measurement=meas), uids=uids)
            secs = time.time() - t0
            sets, selfs = vectors(ws, key, uids)
            for norm in ("grad_norm", "none"):
                scale = np.ones(len(uids)) if norm == "grad_norm" else np.sqrt(np.clip(selfs, 0, None))
                cell = {"epoch": ep, "measurement": meas, "normalize": norm, "seconds": secs}
                for name, variant, sign, contrast in (
                        ("oracle", "oracle:truth", 1.0, False), ("oracle_gold", "oracle:truth_gold", -1.0, False),
                        ("trigger", "trigger:*", 1.0, False), ("oracle_contrast", "oracle:truth", 1.0, True),
                        ("trigger_contrast", "trigger:*", 1.0, True)):
                    vec = detector(sets, variant, sign, scale, contrast)
                    cell[name] = (auroc(vec, y), auprc(vec, y)) if vec is not None else (float("nan"),) * 2
                rows.append(cell)
                print(_fmt(cell), flush=True)

    print("\n| epoch | measurement | normalize | oracle AUROC/AUPRC | oracle (gold label, -) | trigger_influence "
          "| oracle, contrast | trigger_influence, contrast | scan s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for c in rows:
        print(_fmt(c))
    _diagnose(ws, args.model, base, uids, y)
    b = next((c for c in rows if (c["epoch"], c["measurement"], c["normalize"]) == ("2", "label_logprob", "grad_norm")),
             None)
    if b is not None:
        best = max(rows, key=lambda c: c["oracle"][1])
        print(f"\nbaseline (current default ep2/label_logprob/grad_norm) oracle AUPRC {b['oracle'][1]:.3f}; "
              f"best oracle AUPRC {best['oracle'][1]:.3f} at ep{best['epoch']}/{best['measurement']}/"
              f"{best['normalize']} (ratio {best['oracle'][1] / max(b['oracle'][1], 1e-9):.2f}x)")


def _diagnose(ws: Workspace, model: Path, base: ScanSettings, uids: list[str], y: np.ndarray) -> None:
    """Baseline cell: where each poisoned task's poisons rank, and the oracle's AUROC/AUPRC among
    the training rows that share the poisons' task and label (the label-token block effect)."""
    key = scan(ws, model / "checkpoint-epoch-2", base, uids=uids)  # cached by now
    sets, _ = vectors(ws, key, uids)
    vec = detector(sets, "oracle:truth", 1.0, np.ones(len(uids)))
    if vec is None:
        return
    ex = {r[0]: (r[1], r[2]) for r in ws.conn.execute("SELECT uid, task, output FROM examples WHERE role = 'train'")}
    rank = np.empty(len(uids), int)
    rank[np.argsort(-vec, kind="stable")] = np.arange(1, len(uids) + 1)
    print("\nbaseline cell, oracle: ranks of each task's poisons, and metrics within that task+label group")
    for group in sorted({ex[u] for u, p in zip(uids, y, strict=True) if p}):
        m = np.array([ex[u] == group for u in uids])
        print(f"  {group[0]} / {group[1]}: poison ranks {sorted(rank[m & y].tolist())}; within {m.sum()} rows "
              f"AUROC {auroc(vec[m], y[m]):.3f} AUPRC {auprc(vec[m], y[m]):.3f}")


def _fmt(c: dict) -> str:
    def pair(p: tuple[float, float]) -> str:
        return f"{p[0]:.3f} / {p[1]:.3f}"

    return (f"| {c['epoch']} | {c['measurement']} | {c['normalize']} | {pair(c['oracle'])} | "
            f"{pair(c['oracle_gold'])} | {pair(c['trigger'])} | {pair(c['oracle_contrast'])} | "
            f"{pair(c['trigger_contrast'])} | {c['seconds']:.0f} |")


if __name__ == "__main__":
    main()
