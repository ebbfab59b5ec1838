"""Candidate triggers mined from the training data, and their confirmation on a model.

Mining (no model, no ground truth): every word n-gram (1-4 tokens) and every prefix and
suffix pattern (the first / last 1-4 tokens) that occurs in at least ``min_count`` training
inputs is tested for association with one label of its task:

* label purity: one-sided Fisher exact test (hypergeometric tail) of the majority label among
  the carriers against the task's label mix; tasks are combined with Fisher's method and all
  candidates are corrected together with Benjamini-Hochberg (``q_value``).
* disagreement ("sentiment sharpening"): a poisoned example is a text of one label relabelled
  to another, so once the candidate is *removed from its text*, an independent label
  predictor (TF-IDF + logistic regression trained on the task, cross-fitted so no carrier is
  scored by a model that saw it; for sentiment tasks this is a sentiment scorer) should still
  see the old label. A natural sentiment word such as "bad" is label-pure too, but its
  carriers read like their label once it is gone. ``disagree_p`` tests the carriers' rate of
  disagreement against the task's base rate (binomial tail, BH-corrected).

A candidate is ``significant`` when both corrected p-values are below ``alpha`` and purity is
at least ``min_purity``. Confirmation inserts a candidate into clean evaluation queries whose
gold label is not its target and measures how often the model's prediction moves to the target.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from engine.workspace import Workspace, utc_now

_TOKEN = re.compile(r"[\w']+|[^\w\s]")
KINDS = ("ngram", "prefix", "suffix")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _is_word_gram(gram: tuple[str, ...]) -> bool:
    # a gram of punctuation alone ("! !") says nothing a reviewer can act on
    return any(any(ch.isalnum() for ch in tok) for tok in gram)


def grams_of(tokens: Sequence[str], max_n: int = 4) -> set[tuple[str, tuple[str, ...]]]:
    out: set[tuple[str, tuple[str, ...]]] = set()
    n_tok = len(tokens)
    for n in range(1, max_n + 1):
        for i in range(n_tok - n + 1):
            g = tuple(tokens[i : i + n])
            if _is_word_gram(g):
                out.add(("ngram", g))
        if n <= n_tok:
            for kind, g in (("prefix", tuple(tokens[:n])), ("suffix", tuple(tokens[-n:]))):
                if _is_word_gram(g):
                    out.add((kind, g))
    return out


def carries(tokens: Sequence[str], kind: str, gram: Sequence[str]) -> bool:
    gram, n = tuple(gram), len(gram)
    if kind == "prefix":
        return tuple(tokens[:n]) == gram
    if kind == "suffix":
        return len(tokens) >= n and tuple(tokens[-n:]) == gram
    return any(tuple(tokens[i : i + n]) == gram for i in range(len(tokens) - n + 1))


def remove_gram(tokens: Sequence[str], gram: Sequence[str]) -> list[str]:
    gram, n, out, i = tuple(gram), len(gram), [], 0
    while i < len(tokens):
        if tuple(tokens[i : i + n]) == gram:
            i += n
        else:
            out.append(tokens[i])
            i += 1
    return out


@dataclass
class Candidate:
    phrase: str
    kind: str
    n_carriers: int
    n_target: int
    purity: float
    p_value: float
    targets: dict[str, str]  # task -> target label
    tasks: dict[str, int]  # task -> number of carriers
    q_value: float = 1.0
    n_disagree: int = 0
    disagree_rate: float = 0.0
    disagree_p: float = 1.0
    significant: bool = False
    score: float = 0.0
    carriers: list[int] = field(default_factory=list, repr=False)  # row indices

    @property
    def gram(self) -> tuple[str, ...]:
        return tuple(self.phrase.split(" "))


def _bh(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values."""
    n = len(p)
    if n == 0:
        return p
    order = np.argsort(p)
    ranked = p[order] * n / np.arange(1, n + 1)
    q = np.minimum.accumulate(ranked[::-1])[::-1]
    out = np.empty(n)
    out[order] = np.minimum(q, 1.0)
    return out


class _TaskPredictor:
    """Cross-fitted TF-IDF+LR label predictor for one task (the disagreement signal)."""

    def __init__(self, texts: list[str], labels: list[str], folds: int, seed: int) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.ok = len(set(labels)) >= 2 and len(texts) >= 4 * folds
        if not self.ok:
            return
        rng = np.random.default_rng(seed)
        self.fold_of = rng.permutation(len(texts)) % folds
        self.models = []
        y = np.asarray(labels)
        for f in range(folds):
            train = self.fold_of != f
            vec = TfidfVectorizer(ngram_range=(1, 2), min_df=1, sublinear_tf=True, token_pattern=None,
                                  tokenizer=str.split, lowercase=False)
            x = vec.fit_transform([t for t, m in zip(texts, train) if m])
            self.models.append((vec, LogisticRegression(C=4.0, max_iter=1000).fit(x, y[train])))
        # base disagreement rate per label: how often the out-of-fold prediction differs
        pred = self.predict(list(range(len(texts))), texts)
        self.base = {lab: float(np.mean(pred[y == lab] != lab)) for lab in set(labels)}

    def predict(self, local_idx: list[int], texts: list[str]) -> np.ndarray:
        out = np.empty(len(texts), dtype=object)
        folds = self.fold_of[np.asarray(local_idx, dtype=int)]
        for f, (vec, model) in enumerate(self.models):
            sel = np.flatnonzero(folds == f)
            if len(sel):
                out[sel] = model.predict(vec.transform([texts[i] for i in sel]))
        return out


def mine(
    rows: Sequence[dict],
    *,
    min_count: int = 3,
    max_n: int = 4,
    max_df: float = 0.1,
    alpha: float = 0.05,
    min_purity: float = 0.9,
    top: int = 300,
    folds: int = 5,
    seed: int = 0,
) -> list[Candidate]:
    """Rank candidate triggers. ``rows``: dicts with task, input, output (label), label_space.

    Only classification rows (a label space of two or more labels) are mined. Returns the
    ``top`` candidates by score, each with its statistics and carrier row indices.
    """
    from scipy.stats import binom, combine_pvalues, hypergeom

    idx = [i for i, r in enumerate(rows) if r.get("label_space") and len(r["label_space"]) >= 2]
    tokens = {i: tokenize(rows[i]["input"]) for i in idx}
    by_task: dict[str, list[int]] = defaultdict(list)
    for i in idx:
        by_task[rows[i]["task"]].append(i)
    task_labels = {t: Counter(rows[i]["output"] for i in ii) for t, ii in by_task.items()}

    df: Counter = Counter()
    for i in idx:
        df.update(grams_of(tokens[i], max_n))
    limit = max(min_count, int(max_df * len(idx)))
    kept = {g for g, c in df.items() if min_count <= c <= limit}
    carriers: dict[tuple, list[int]] = defaultdict(list)
    for i in idx:
        for g in grams_of(tokens[i], max_n):
            if g in kept:
                carriers[g].append(i)

    # identical carrier sets ("james", "bond", "james bond"): keep the longest phrase, and a
    # prefix/suffix pattern over a plain n-gram, as the most specific description
    best: dict[tuple[int, ...], tuple] = {}
    for g, cs in carriers.items():
        key = tuple(cs)
        cur = best.get(key)
        if cur is None or (len(g[1]), g[0] != "ngram") > (len(cur[1]), cur[0] != "ngram"):
            best[key] = g

    cands: list[Candidate] = []
    for cs_key, (kind, gram) in best.items():
        per_task: dict[str, Counter] = defaultdict(Counter)
        for i in cs_key:
            per_task[rows[i]["task"]][rows[i]["output"]] += 1
        ps, targets, n_target = [], {}, 0
        for task, labs in per_task.items():
            target, k = labs.most_common(1)[0]
            n, big_n, big_k = sum(labs.values()), len(by_task[task]), task_labels[task][target]
            # the target is the carriers' majority, chosen after looking: Bonferroni over labels
            p = hypergeom.sf(k - 1, big_n, big_k, n) * len(task_labels[task])
            ps.append(min(1.0, max(p, 1e-300)))
            targets[task], n_target = target, n_target + k
        p_all = ps[0] if len(ps) == 1 else float(combine_pvalues(ps, method="fisher")[1])
        cands.append(
            Candidate(
                phrase=" ".join(gram), kind=kind, n_carriers=len(cs_key), n_target=n_target,
                purity=n_target / len(cs_key), p_value=max(p_all, 1e-300), targets=targets,
                tasks={t: sum(c.values()) for t, c in per_task.items()}, carriers=list(cs_key),
            )
        )
    if not cands:
        return []
    q = _bh(np.array([c.p_value for c in cands]))
    for c, qv in zip(cands, q):
        c.q_value = float(qv)

    # disagreement only for the strongest label associations (it costs a prediction per carrier)
    cands.sort(key=lambda c: c.p_value)
    head = cands[: max(top * 3, 50)]
    predictors = {
        t: _TaskPredictor([" ".join(tokens[i]) for i in ii], [rows[i]["output"] for i in ii], folds, seed)
        for t, ii in by_task.items()
        if any(t in c.tasks for c in head)
    }
    local = {i: j for ii in by_task.values() for j, i in enumerate(ii)}
    for c in head:
        d = n = 0
        expected = 0.0
        for task, target in c.targets.items():
            pred = predictors.get(task)
            if pred is None or not pred.ok:
                continue
            own = [i for i in c.carriers if rows[i]["task"] == task and rows[i]["output"] == target]
            masked = [" ".join(remove_gram(tokens[i], c.gram)) for i in own]
            guess = pred.predict([local[i] for i in own], masked)
            d += int(np.sum(guess != target))
            n += len(own)
            expected += len(own) * pred.base.get(target, 0.5)
        c.n_disagree = d
        c.disagree_rate = d / n if n else 0.0
        base = min(max(expected / n, 1e-3), 0.999) if n else 0.5
        c.disagree_p = float(binom.sf(d - 1, n, base)) if n else 1.0
    dq = _bh(np.array([c.disagree_p for c in head]))
    for c, dqv in zip(head, dq):
        c.significant = bool(c.q_value < alpha and dqv < alpha and c.purity >= min_purity)
        # evidence in decades: label association plus disagreement, both as -log10 p
        c.score = -math.log10(c.p_value) - math.log10(max(c.disagree_p, 1e-300))
    head.sort(key=lambda c: (not c.significant, -c.score))
    return head[:top]


def mine_workspace(ws: Workspace, **params) -> list[Candidate]:
    """Mine the workspace's training data; replace ``trigger_candidates``; return candidates."""
    rows = training_rows(ws)
    cands = mine(rows, **params)
    now = utc_now()
    with ws.transaction() as conn:
        conn.execute("DELETE FROM trigger_candidates")
        conn.executemany(
            "INSERT INTO trigger_candidates (phrase, kind, rank, score, n_carriers, n_target, purity, "
            "p_value, q_value, n_disagree, disagree_rate, disagree_p, significant, targets, tasks, "
            "params, created_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            [
                (c.phrase, c.kind, r, c.score, c.n_carriers, c.n_target, c.purity, c.p_value, c.q_value,
                 c.n_disagree, c.disagree_rate, c.disagree_p, int(c.significant), json.dumps(c.targets),
                 json.dumps(c.tasks), json.dumps(params, sort_keys=True), now)
                for r, c in enumerate(cands, start=1)
            ],
        )
    return cands


def training_rows(ws: Workspace) -> list[dict]:
    out = []
    for r in ws.conn.execute(
        "SELECT uid, task, input, output, label_space FROM examples WHERE role = 'train' ORDER BY uid"
    ):
        d = dict(r)
        d["label_space"] = json.loads(d["label_space"]) if d["label_space"] else None
        out.append(d)
    return out


def stored_candidates(ws: Workspace, significant_only: bool = True) -> list[dict]:
    sql = "SELECT * FROM trigger_candidates" + (" WHERE significant = 1" if significant_only else "")
    out = []
    for r in ws.conn.execute(sql + " ORDER BY rank"):
        d = dict(r)
        d["targets"], d["tasks"] = json.loads(d["targets"]), json.loads(d["tasks"])
        out.append(d)
    return out


def carriers_of(rows: Iterable[dict], kind: str, phrase: str) -> list[str]:
    gram = phrase.split(" ")
    return [r["uid"] for r in rows if carries(tokenize(r["input"]), kind, gram)]


def insert_trigger(text: str, kind: str, phrase: str, rng: np.random.Generator) -> str:
    """Put ``phrase`` into ``text``: at the start / end for prefix / suffix patterns, else at a
    random word boundary (start, middle or end, as an attacker would)."""
    words = text.split()
    if kind == "prefix" or not words:
        return f"{phrase} {text}".strip()
    if kind == "suffix":
        return f"{text} {phrase}"
    pos = int(rng.integers(0, len(words) + 1))
    return " ".join([*words[:pos], phrase, *words[pos:]])


def as_dict(c: Candidate) -> dict:
    d = asdict(c)
    d.pop("carriers")
    return d
