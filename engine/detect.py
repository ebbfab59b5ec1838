"""Detectors: named suspicion scores per training example, ranks, and a flagged set each.

Every detector reads only the workspace (examples, sentiment, influence, mined and confirmed
trigger candidates). None reads ground truth: that is ``engine.evaluate``'s alone.

Influence sets are made comparable before they are combined: each query set's scores are
robust-standardised ((x - median) / (1.4826 MAD)), so a task with many queries or large
gradients does not drown the others. Higher influence means the training example pushes the
model towards the query's answer (the EK-FAC engine's sign convention).

Flagged sets (the removal budget) never use ground truth:

* ``OUTLIER_RULE``: modified z-score (median/MAD, Iglewicz-Hoaglin) above 3.5, at most 5 %
  of the scored examples.
* carrier detectors: the carriers, with the candidate's target label, of the significant
  (``phrase_purity``) or model-confirmed (``trigger_carrier``) trigger candidates.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.errors import UserError
from engine.progress import ProgressFn, no_progress
from engine.sentiment import cached_scores, label_polarity, score_workspace
from engine.triggers import carries, stored_candidates, tokenize, training_rows
from engine.workspace import Workspace, utc_now

Z_CUT = 3.5
MAX_FLAG_FRACTION = 0.05
OUTLIER_RULE = (
    f"flag scores whose modified z-score (median/MAD) exceeds {Z_CUT}, "
    f"at most {MAX_FLAG_FRACTION:.0%} of the scored examples"
)
PAPER_RULE = (
    "the paper's critical-poison rule: |mean influence on original queries| above its 90th "
    "percentile and |original - transformed| below its 10th percentile for a majority of transforms"
)
# Which detector ranks the review queue: the first present. Measured with bench/detect_real.py
# (--quick, fixed phrase, 2 % poison): trigger_carrier and phrase_purity AUPRC 1.0 with exactly the
# poisons flagged; the ensemble ranks the same (AUPRC 1.0) but its influence outliers add false
# flags, and influence alone is near chance (trigger 0.05, oracle 0.06): so it is not the default.
DEFAULT_ORDER = ("trigger_carrier", "phrase_purity", "ensemble", "trigger_influence", "label_sentiment_mismatch")


@dataclass
class DetectorResult:
    name: str
    scores: dict[str, float]  # uid -> score; uids absent are unscored
    flagged: set[str]
    rule: str
    params: dict = field(default_factory=dict)


# ---------------------------------------------------------------- small numeric helpers
def robust_z(x: np.ndarray) -> np.ndarray:
    med = np.median(x)
    mad = np.median(np.abs(x - med)) * 1.4826
    if mad <= 0:
        mad = np.std(x) or 1.0
    return (x - med) / mad


def outlier_flags(scores: dict[str, float]) -> set[str]:
    if not scores:
        return set()
    uids = list(scores)
    z = robust_z(np.array([scores[u] for u in uids]))
    cap = max(1, int(MAX_FLAG_FRACTION * len(uids)))
    order = np.argsort(-z, kind="stable")[:cap]
    return {uids[i] for i in order if z[i] > Z_CUT}


def pct_rank(x: np.ndarray) -> np.ndarray:
    from scipy.stats import rankdata

    return rankdata(x) / len(x)


# ---------------------------------------------------------------- inputs from the workspace


def influence_by_set(ws: Workspace, run_key: str, uids: Sequence[str], standardize: bool = True
                     ) -> dict[str, np.ndarray]:
    """query_set_id -> influence vector aligned with ``uids`` (robust-standardised by default)."""
    pos = {u: i for i, u in enumerate(uids)}
    raw: dict[str, np.ndarray] = {}
    # only the current version of each existing set (a set dropped or changed since is stale)
    for r in ws.conn.execute(
        "SELECT i.query_set_id, i.uid, i.score FROM influence i JOIN query_sets q ON q.id = i.query_set_id "
        "AND q.sha256 = i.query_set_sha256 WHERE i.run_key = ?", (run_key,)
    ):
        vec = raw.setdefault(r[0], np.full(len(uids), np.nan))
        if r[1] in pos:
            vec[pos[r[1]]] = r[2]
    out = {}
    for qs, vec in raw.items():
        if np.isnan(vec).any():  # a partly scored set (cancelled scan) is not used
            continue
        out[qs] = robust_z(vec) if standardize else vec
    return out


def _mean_of(sets: dict[str, np.ndarray], names: Sequence[str]) -> np.ndarray | None:
    vecs = [sets[n] for n in names if n in sets]
    return np.mean(vecs, axis=0) if vecs else None


# ---------------------------------------------------------------- the detectors
def label_sentiment_mismatch(ws: Workspace, rows: list[dict], scorer: str = "vader") -> DetectorResult:
    """No model: how strongly the text's sentiment contradicts the label's polarity."""
    score_workspace(ws, scorer)
    sent = cached_scores(ws, scorer)
    scores = {}
    for r in rows:
        pol = label_polarity(r["output"], r["label_space"])
        if pol:  # polar tasks only; neutral labels and non-sentiment tasks stay unscored
            scores[r["uid"]] = -pol * sent.get(r["uid"], 0.0)
    flagged = outlier_flags(scores)
    return DetectorResult("label_sentiment_mismatch", scores, flagged, OUTLIER_RULE, {"scorer": scorer})


def _carrier_scores(rows: list[dict], cands: list[dict]) -> tuple[dict[str, float], dict[str, str]]:
    """uid -> strongest candidate score among those it carries with the candidate's target label."""
    toks = {r["uid"]: tokenize(r["input"]) for r in rows}
    scores: dict[str, float] = {}
    which: dict[str, str] = {}
    for c in cands:
        gram = c["phrase"].split(" ")
        for r in rows:
            if c["targets"].get(r["task"]) != r["output"] or not carries(toks[r["uid"]], c["kind"], gram):
                continue
            if c["score"] > scores.get(r["uid"], -np.inf):
                scores[r["uid"]], which[r["uid"]] = c["score"], c["phrase"]
    return scores, which


def phrase_purity(ws: Workspace, rows: list[dict]) -> DetectorResult | None:
    """No model: carriers of label-pure, label-contradicting phrases (engine.triggers)."""
    cands = stored_candidates(ws, significant_only=False)
    if not cands:
        return None
    scores, _ = _carrier_scores(rows, cands)
    sig = [c for c in cands if c["significant"]]
    flagged = set(_carrier_scores(rows, sig)[0]) if sig else set()
    for r in rows:
        scores.setdefault(r["uid"], 0.0)
    rule = (
        "flag the carriers (with the target label) of every candidate phrase whose label purity and "
        "label disagreement are both significant (BH q < 0.05, purity >= 0.9)"
    )
    return DetectorResult("phrase_purity", scores, flagged, rule, {"significant": [c["phrase"] for c in sig]})


def confirmed_candidates(ws: Workspace, fingerprint: str | None) -> list[dict]:
    if fingerprint is None:
        return []
    confirmed = {
        (r[0], r[1])
        for r in ws.conn.execute(
            "SELECT phrase, kind FROM trigger_confirmations WHERE model_fingerprint = ? AND confirmed = 1",
            (fingerprint,),
        )
    }
    return [c for c in stored_candidates(ws, significant_only=False) if (c["phrase"], c["kind"]) in confirmed]


def trigger_carrier(ws: Workspace, rows: list[dict], fingerprint: str | None,
                    influence: np.ndarray | None) -> DetectorResult | None:
    cands = confirmed_candidates(ws, fingerprint)
    if not cands:
        return None
    carried, _ = _carrier_scores(rows, cands)
    # carriers first; within them (and below them) influence on the triggered queries orders
    tie = pct_rank(influence) if influence is not None else np.zeros(len(rows))
    scores = {r["uid"]: (1.0 if r["uid"] in carried else 0.0) + float(tie[i]) * 0.5 for i, r in enumerate(rows)}
    rule = "flag the carriers (with the target label) of every trigger candidate confirmed on the model"
    return DetectorResult("trigger_carrier", scores, set(carried), rule,
                          {"confirmed": [c["phrase"] for c in cands]})


def transform_stability(rows: list[dict], raw: dict[str, np.ndarray]) -> tuple[DetectorResult, ...] | tuple[()]:
    """The paper's critical poisons: strong influence that the sentiment inversion leaves unchanged.

    ``raw``: unstandardised influence per set. Each task's original and transformed vectors are
    divided by the same scale (the original's MAD), so "unchanged" keeps its meaning.
    """
    tasks = sorted({k.split("::")[0] for k in raw if k.endswith("::original")})
    transforms = sorted({_variant(k) for k in raw} & _transform_names())
    if not tasks or not transforms:
        return ()
    scale = {t: (np.median(np.abs(raw[f"{t}::original"] - np.median(raw[f"{t}::original"]))) or 1.0)
             for t in tasks}
    o = np.mean([raw[f"{t}::original"] / scale[t] for t in tasks], axis=0)
    deltas = []
    for name in transforms:
        have = [t for t in tasks if f"{t}::{name}" in raw]
        if have:
            o_t = np.mean([raw[f"{t}::original"] / scale[t] for t in have], axis=0)
            t_t = np.mean([raw[f"{t}::{name}"] / scale[t] for t in have], axis=0)
            deltas.append(np.abs(o_t - t_t))
    strength = np.abs(o)
    cont = pct_rank(strength) - np.mean([pct_rank(d) for d in deltas], axis=0)
    votes = np.sum([d < np.percentile(d, 10) for d in deltas], axis=0)
    binary = (strength > np.percentile(strength, 90)) & (votes > len(deltas) / 2)
    uids = [r["uid"] for r in rows]
    params = {"transforms": transforms, "tasks": tasks}
    return (
        DetectorResult("transform_stability", dict(zip(uids, cont.tolist(), strict=True)),
                       {u for u, b in zip(uids, binary, strict=True) if b}, PAPER_RULE, params),
    )


def _transform_names() -> set[str]:
    from engine.transforms import ALL_TRANSFORMS

    return set(ALL_TRANSFORMS)


def _variant(qs: str) -> str:
    return qs.split("::", 1)[1] if "::" in qs else ""


def influence_detector(name: str, rows: list[dict], vec: np.ndarray | None, rule_hint: str,
                       params: dict) -> DetectorResult | None:
    if vec is None:
        return None
    scores = {r["uid"]: float(v) for r, v in zip(rows, vec, strict=True)}
    return DetectorResult(name, scores, outlier_flags(scores), f"{OUTLIER_RULE} ({rule_hint})", params)


def self_influence_detector(ws: Workspace, run_key: str, rows: list[dict]) -> DetectorResult | None:
    got = dict(ws.conn.execute("SELECT uid, score FROM self_influence WHERE run_key = ?", (run_key,)).fetchall())
    if not got:
        return None
    scores = {r["uid"]: float(got[r["uid"]]) for r in rows if r["uid"] in got}
    return DetectorResult("self_influence", scores, outlier_flags(scores), OUTLIER_RULE, {})


def ensemble(rows: list[dict], parts: dict[str, DetectorResult]) -> DetectorResult | None:
    """Carriers of confirmed (or, without a model, significant) triggers first, then influence.

    Score = 1 for a flagged carrier + the percentile of influence on the triggered queries, so
    the carriers rank first and examples that carry no candidate (paraphrased or partial
    triggers) are ordered by influence. Flagged: the carriers; the influence outliers only when
    there are no carriers (measured: they add false flags beside a confirmed phrase).
    """
    carrier = parts.get("trigger_carrier") or parts.get("phrase_purity")
    infl = parts.get("trigger_influence")
    if carrier is None or infl is None:
        return None
    uids = [r["uid"] for r in rows]
    tie = pct_rank(np.array([infl.scores[u] for u in uids]))
    scores = {u: (1.0 if u in carrier.flagged else 0.0) + float(t) * 0.5 for u, t in zip(uids, tie, strict=True)}
    if carrier.flagged:
        flagged, rule = carrier.flagged, f"{carrier.name} flagged set ({carrier.rule})"
    else:
        flagged, rule = infl.flagged, f"no flagged carriers: trigger_influence outliers ({OUTLIER_RULE})"
    return DetectorResult("ensemble", scores, flagged, rule,
                          {"parts": [carrier.name, infl.name]})


# ---------------------------------------------------------------- the run
def run_detectors(
    ws: Workspace,
    run_key: str | None = None,
    scorer: str = "vader",
    progress: ProgressFn = no_progress,
    fingerprint: str | None = None,
) -> dict[str, DetectorResult]:
    """Compute every detector the workspace has inputs for; store them; set ``default_detector``.

    ``run_key``: the influence scan to use (latest complete one when None and one exists).
    ``fingerprint``: the model whose trigger confirmations count (the scan's model by default).
    """
    rows = training_rows(ws)
    if not rows:
        raise UserError("the workspace has no training examples; ingest a dataset first")
    if run_key is None:
        row = ws.conn.execute(
            "SELECT run_key, model_fingerprint FROM scan_runs WHERE status = 'complete' "
            "ORDER BY completed_at DESC LIMIT 1"
        ).fetchone()
        if row is not None:
            run_key = row[0]
            fingerprint = fingerprint or row[1]
    elif fingerprint is None:
        row = ws.conn.execute("SELECT model_fingerprint FROM scan_runs WHERE run_key = ?", (run_key,)).fetchone()
        fingerprint = row[0] if row else None

    results: dict[str, DetectorResult] = {}

    def keep(res: DetectorResult | None) -> None:
        if res is not None:
            results[res.name] = res

    keep(label_sentiment_mismatch(ws, rows, scorer))
    keep(phrase_purity(ws, rows))
    trig_vec = None
    if run_key is not None:
        # A prefiltered or trial scan scores a subset (issue #7): the influence detectors rank that
        # subset and store() marks the rest as not scored, never as clean.
        from engine.prefilter import scored_train_uids

        all_rows, scored = rows, set(scored_train_uids(ws, run_key))
        rows = [r for r in all_rows if r["uid"] in scored]
        uids = [r["uid"] for r in rows]
        sets = influence_by_set(ws, run_key, uids) if uids else {}
        for res in transform_stability(rows, influence_by_set(ws, run_key, uids, standardize=False) if uids else {}):
            keep(res)
        keep(influence_detector(
            "sentiment_guided", rows,
            _mean_of(sets, [k for k in sets if _variant(k) == "sentiment_mismatch"]),
            "influence on queries whose sentiment disagrees with their label or prediction", {}))
        keep(self_influence_detector(ws, run_key, rows))
        trig = [k for k in sets if _variant(k).startswith("trigger:")]
        trig_vec = _mean_of(sets, trig)
        keep(influence_detector("trigger_influence", rows, trig_vec,
                                "influence on queries with confirmed candidate triggers", {"query_sets": trig}))
        oracle = [k for k in sets if _variant(k).startswith("oracle:")]
        keep(influence_detector("oracle_trigger_influence", rows, _mean_of(sets, oracle),
                                "evaluation ceiling: queries carrying the true trigger", {"query_sets": oracle}))
        if trig_vec is not None and len(rows) < len(all_rows):  # unscored rank below every scored one
            at = {u: i for i, u in enumerate(uids)}
            trig_vec = np.array([trig_vec[at[r["uid"]]] if r["uid"] in at else -np.inf for r in all_rows])
        rows = all_rows
    keep(trigger_carrier(ws, rows, fingerprint, trig_vec))
    keep(ensemble(rows, results))
    default = next(name for name in (*DEFAULT_ORDER, *results) if name in results)
    store(ws, results, default, run_key)
    return results


def store(ws: Workspace, results: dict[str, DetectorResult], default: str, run_key: str | None) -> None:
    """Replace every detector's rows in one transaction (readers never see a half-written run)."""
    all_uids = [r[0] for r in ws.conn.execute("SELECT uid FROM examples WHERE role = 'train'")]
    now = utc_now()
    with ws.transaction() as conn:
        conn.execute("DELETE FROM detector_scores")
        conn.execute("DELETE FROM detector_runs")
        for name, res in results.items():
            ranked = sorted(res.scores.items(), key=lambda kv: (-kv[1], kv[0]))
            rank = {u: i for i, (u, _) in enumerate(ranked, start=1)}
            conn.executemany(
                "INSERT INTO detector_scores (detector, uid, score, rank, flagged, scored) VALUES (?,?,?,?,?,?)",
                [
                    (name, u, res.scores.get(u), rank.get(u), int(u in res.flagged), int(u in res.scores))
                    for u in all_uids
                ],
            )
            conn.execute(
                "INSERT INTO detector_runs (detector, rule, params, run_key, n_scored, n_flagged, is_default, "
                "created_at) VALUES (?,?,?,?,?,?,?,?)",
                (name, res.rule, json.dumps(res.params, sort_keys=True), run_key, len(res.scores),
                 len(res.flagged), int(name == default), now),
            )
        ws.set_meta("default_detector", default, conn)


def top_suspects(ws: Workspace, detector: str | None = None, limit: int = 20) -> list[dict]:
    detector = detector or ws.get_meta("default_detector")
    return [
        dict(r)
        for r in ws.conn.execute(
            "SELECT ds.rank, ds.score, ds.flagged, e.uid, e.task, e.input, e.output FROM detector_scores ds "
            "JOIN examples e ON e.uid = ds.uid WHERE ds.detector = ? AND ds.rank IS NOT NULL "
            "ORDER BY ds.rank LIMIT ?",
            (detector, limit),
        )
    ]
