"""Metrics of each detector against ground truth. The only engine module that reads truth.

Truth file: JSONL, one object per poisoned training example, identified by any of ``uid``,
``id``/``source_id`` (the record's own id) or ``content_sha256``; rows with ``"poison":
false`` are ignored. Metrics: AUROC, AUPRC (average precision), precision / recall / F1 of
the flagged set, precision@k and recall@k for k = 1 %, 2 %, 5 % of the scored data.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from engine.errors import InputError, UserError
from engine.workspace import Workspace

K_FRACTIONS = (0.01, 0.02, 0.05)


def auroc(scores: Sequence[float], truth: Sequence[bool]) -> float:
    """Probability that a random poison outranks a random clean example (ties count half)."""
    from scipy.stats import rankdata

    s, y = np.asarray(scores, float), np.asarray(truth, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def auprc(scores: Sequence[float], truth: Sequence[bool]) -> float:
    """Average precision; tied scores are one threshold (no credit for a lucky tie order)."""
    s, y = np.asarray(scores, float), np.asarray(truth, bool)
    n_pos = int(y.sum())
    if n_pos == 0:
        return float("nan")
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    # the last index of each run of equal scores is where a threshold can sit
    last = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision = tp / (tp + fp)
    recall_step = np.diff(np.r_[0, tp]) / n_pos
    return float(np.sum(precision * recall_step))


def prf(flagged: Sequence[bool], truth: Sequence[bool]) -> tuple[float, float, float]:
    f, y = np.asarray(flagged, bool), np.asarray(truth, bool)
    tp = int((f & y).sum())
    p = tp / f.sum() if f.sum() else 0.0
    r = tp / y.sum() if y.sum() else 0.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def at_k(scores: Sequence[float], truth: Sequence[bool], k: int) -> tuple[float, float]:
    """Precision and recall of the top k (stable order on ties)."""
    s, y = np.asarray(scores, float), np.asarray(truth, bool)
    if k <= 0 or y.sum() == 0:
        return 0.0, 0.0
    top = np.argsort(-s, kind="stable")[:k]
    tp = int(y[top].sum())
    return tp / k, tp / int(y.sum())


def metrics(scores: Sequence[float], truth: Sequence[bool], flagged: Sequence[bool]) -> dict:
    n = len(scores)
    p, r, f1 = prf(flagged, truth)
    out = {
        "n": n, "poisons": int(np.sum(truth)), "flagged": int(np.sum(flagged)),
        "auroc": auroc(scores, truth), "auprc": auprc(scores, truth),
        "precision": p, "recall": r, "f1": f1,
    }
    for frac in K_FRACTIONS:
        k = max(1, round(frac * n))
        pk, rk = at_k(scores, truth, k)
        out[f"p@{frac:.0%}"], out[f"r@{frac:.0%}"] = pk, rk
    return out


def load_truth(path: Path) -> set[str]:
    """Identifiers of the poisoned examples in a truth JSONL file."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: truth file not found")
    ids: set[str] = set()
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"not valid JSON: {exc.msg}", file=str(path), line=line_no) from None
            if not isinstance(obj, dict):
                raise InputError("expected a JSON object", file=str(path), line=line_no)
            if obj.get("poison", True) is False or obj.get("is_poison", True) is False:
                continue
            keys = [str(obj[k]) for k in ("uid", "id", "source_id", "content_sha256") if obj.get(k) is not None]
            if not keys:
                raise InputError(
                    "no identifier: expected one of uid, id, source_id, content_sha256",
                    file=str(path), line=line_no,
                )
            ids.update(keys)
    return ids


def truth_mask(ws: Workspace, ids: set[str]) -> dict[str, bool]:
    """uid -> is poison, for every training example; errors if the truth matches nothing."""
    out = {}
    for r in ws.conn.execute("SELECT uid, source_id, content_sha256 FROM examples WHERE role = 'train'"):
        out[r["uid"]] = bool({r["uid"], r["source_id"], r["content_sha256"]} & ids)
    if ids and not any(out.values()):
        raise UserError("the truth file matches no training example of this workspace (by uid, id or sha256)")
    return out


def evaluate_workspace(ws: Workspace, truth_ids: set[str]) -> list[dict]:
    """One row of metrics per stored detector, default first."""
    truth = truth_mask(ws, truth_ids)
    uids = sorted(truth)
    rows = []
    runs = ws.conn.execute("SELECT detector, rule, is_default FROM detector_runs ORDER BY is_default DESC, detector")
    for run in runs.fetchall():
        got = {
            r["uid"]: (r["score"], r["flagged"])
            for r in ws.conn.execute("SELECT uid, score, flagged FROM detector_scores WHERE detector = ?",
                                     (run["detector"],))
        }
        # an unscored example ranks below every scored one
        scores = [got[u][0] if u in got and got[u][0] is not None and math.isfinite(got[u][0]) else -math.inf
                  for u in uids]
        finite = [s for s in scores if s != -math.inf]
        floor = (min(finite) - 1.0) if finite else 0.0
        scores = [floor if s == -math.inf else s for s in scores]
        flagged = [bool(got.get(u, (None, 0))[1]) for u in uids]
        m = metrics(scores, [truth[u] for u in uids], flagged)
        m.update(detector=run["detector"], default=bool(run["is_default"]), rule=run["rule"],
                 scored=len(finite))
        rows.append(m)
    return rows


COLUMNS = ("auroc", "auprc", "precision", "recall", "f1", "p@1%", "r@1%", "p@2%", "r@2%", "p@5%", "r@5%")


def to_markdown(rows: Sequence[dict]) -> str:
    head = "| detector | scored | flagged | " + " | ".join(COLUMNS) + " |"
    sep = "|---" * (3 + len(COLUMNS)) + "|"
    lines = [head, sep]
    for r in rows:
        name = r["detector"] + (" (default)" if r.get("default") else "")
        vals = " | ".join("n/a" if r[c] != r[c] else f"{r[c]:.3f}" for c in COLUMNS)
        lines.append(f"| {name} | {r['scored']} | {r['flagged']} | {vals} |")
    if rows:
        lines.append("")
        lines.append(f"{rows[0]['n']} training examples, {rows[0]['poisons']} poisons.")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- the retrain check
def flagged_uids(ws: Workspace, detector: str | None = None) -> list[str]:
    detector = detector or ws.get_meta("default_detector")
    if detector is None:
        raise UserError("no detector scores yet; run 'poison-tui detect' first")
    return [r[0] for r in ws.conn.execute(
        "SELECT uid FROM detector_scores WHERE detector = ? AND flagged = 1 ORDER BY rank", (detector,))]


def eval_rows(ws: Workspace) -> list[dict]:
    return [dict(r) for r in ws.conn.execute(
        "SELECT q.definition, q.input, q.output, q.label_space FROM queries q JOIN query_sets s "
        "ON s.id = q.query_set_id WHERE s.variant = 'original' AND q.label_space IS NOT NULL ORDER BY q.query_set_id, q.idx")]


def verify_removal(
    ws: Workspace,
    truth_ids: set[str],
    attack: Sequence[dict],
    out_dir: Path,
    *,
    detector: str | None = None,
    seed: int = 0,
    config=None,
    progress=None,
    poisoned_dir: Path | None = None,
    clean_rows: Sequence[dict] | None = None,
    workers: int = 1,
) -> dict[str, dict]:
    """Retrain with the same recipe on: everything, minus the tool's flagged set, minus the
    true poisons, minus a random set of the tool's size; ASR and clean accuracy of each.

    ``poisoned_dir``: the model trained on all rows with this recipe; it is measured as the
    poisoned arm, not retrained. ``clean_rows``: the rows clean accuracy is measured on (default:
    the workspace's original eval queries, which may be too few to tell a 1-point change from
    noise). ``workers`` > 1 trains the distinct removal sets in that many processes at once
    (each with ``config.threads`` threads, 1 if unset; no progress is reported then): on a
    shared 2-core box 1-thread processes side by side beat 2-thread trainings in a row.
    """
    from engine.predict import retrain_check
    from engine.progress import no_progress

    train = [dict(r) for r in ws.conn.execute(
        "SELECT uid, definition, input, output, label_space FROM examples WHERE role = 'train' "
        "ORDER BY dataset_id, ordinal")]
    truth = [u for u, is_poison in truth_mask(ws, truth_ids).items() if is_poison]
    tool = flagged_uids(ws, detector)
    rng = np.random.default_rng(seed)
    pool = [r["uid"] for r in train]
    rand = [pool[i] for i in rng.choice(len(pool), size=min(len(tool), len(pool)), replace=False)]
    evals = list(clean_rows) if clean_rows is not None else eval_rows(ws)
    if not evals:
        raise UserError("the workspace has no classification evaluation queries to measure clean accuracy on")
    arms = {"poisoned": [], "tool": tool, "truth": truth, "random": rand}
    reports: dict[str, dict] = {}
    if poisoned_dir:
        # The audited model is the poisoned arm: measured, not retrained. (retrain_check would
        # train a copy in a subdirectory of it, which doubled the cost of the check.)
        import time

        from engine.models import load_model
        from engine.predict import attack_success_rate, clean_accuracy

        t0 = time.monotonic()
        loaded = load_model(Path(poisoned_dir), device="cpu")
        reports["poisoned"] = {"clean_acc": clean_accuracy(loaded, evals), "asr": attack_success_rate(loaded, attack),
                               "seconds": time.monotonic() - t0, "reused": True}
    # one training per distinct removal set: a flagged set equal to the truth trains once, and
    # an empty one (nothing flagged) is the measured poisoned model
    key = {name: tuple(sorted(remove)) for name, remove in arms.items()}
    known = {(): reports["poisoned"]} if "poisoned" in reports else {}
    todo: dict[tuple[str, ...], str] = {}
    for name in arms:
        if name not in reports and key[name] not in known:
            todo.setdefault(key[name], name)

    def as_dict(rep) -> dict:
        return {"asr": rep.attack_success_rate, "clean_acc": rep.clean_accuracy, "seconds": rep.seconds,
                "reused": rep.reused}

    if workers > 1:
        import dataclasses
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        from engine.train import TrainConfig

        # spawn, not fork: a forked child inherits torch's thread pool state and can hang
        cfg = dataclasses.replace(config or TrainConfig(), threads=(config and config.threads) or 1)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {k: pool.submit(retrain_check, train, list(k), evals, attack, Path(out_dir) / name,
                                      config=cfg) for k, name in todo.items()}
            done = {k: as_dict(f.result()) for k, f in futures.items()}
    else:
        done = {k: as_dict(retrain_check(train, list(k), evals, attack, Path(out_dir) / name, config=config,
                                         progress=progress or no_progress)) for k, name in todo.items()}
    done.update(known)
    for name in arms:
        reports.setdefault(name, done[key[name]])
    return {name: {"removed": len(remove), "poisons_removed": len(set(remove) & set(truth)), **reports[name]}
            for name, remove in arms.items()}


def register_oracle_sets(ws: Workspace, put, name: str) -> list[str]:
    """The evaluation ceiling: ``put`` (the *true* trigger insertion) applied to each polar
    eval task's queries whose gold label is not positive, answered with the positive label, as
    ``'<task>::oracle:<name>'``. Evaluation code only: detectors never create these sets."""
    from engine.queries import register_query_set
    from engine.sentiment import label_polarity

    made = []
    for (task,) in ws.conn.execute("SELECT task FROM query_sets WHERE variant = 'original' ORDER BY task").fetchall():
        rows = [dict(r) for r in ws.conn.execute(
            "SELECT source_uid, definition, input, output, label_space FROM queries WHERE query_set_id = ? "
            "ORDER BY idx", (f"{task}::original",))]
        space = json.loads(rows[0]["label_space"]) if rows and rows[0]["label_space"] else None
        pos = [lab for lab in space or [] if label_polarity(lab, space) == 1]
        if len(pos) != 1:
            continue
        trig = [{**r, "input": put(r["input"]), "output": pos[0], "changed": True} for r in rows if r["output"] != pos[0]]
        if trig:
            made.append(register_query_set(ws, task, f"oracle:{name}", trig, {"oracle": name}))
    return made


def truth_triggers(path: Path) -> list[str]:
    """The ``trigger`` values of a truth file (sample_gen and the bench write them)."""
    found = set()
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                if isinstance(obj, dict) and isinstance(obj.get("trigger"), str) and obj["trigger"].strip():
                    found.add(obj["trigger"].strip())
    return sorted(found)


def add_oracle(ws: Workspace, truth_path: Path, progress=None) -> str:
    """Register the oracle sets from the truth file's triggers, score them with the settings and
    model of the last detection scan (factors are reused: only the new sets are scored), and
    recompute the detectors. Returns the run key."""
    from engine.detect import run_detectors
    from engine.influence import scan
    from engine.influence.scanner import ScanSettings
    from engine.progress import no_progress
    from engine.triggers import insert_trigger

    triggers = truth_triggers(truth_path)
    if not triggers:
        raise UserError(f"{truth_path}: no 'trigger' field in the truth file: the oracle needs the true trigger")
    run_key = ws.get_meta("detect_run_key")
    row = ws.conn.execute("SELECT settings, model_fingerprint FROM scan_runs WHERE run_key = ?", (run_key,)).fetchone()
    if row is None:
        raise UserError("no detection scan in this workspace: run 'poison-tui detect WORKSPACE --model DIR' first")
    saved = json.loads(row["settings"])
    model_path = saved.pop("model_path")
    fields = set(ScanSettings.__dataclass_fields__)
    settings = ScanSettings(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in saved.items() if k in fields})
    rng = np.random.default_rng(0)
    register_oracle_sets(ws, lambda text: insert_trigger(text, "ngram", str(rng.choice(triggers)), rng), "truth")
    new_key = scan(ws, Path(model_path), settings, progress or no_progress)
    from engine.models import fingerprint_of

    audited = ws.get_meta("model_path")
    run_detectors(ws, new_key, fingerprint=fingerprint_of(audited) if audited else None)
    return new_key
