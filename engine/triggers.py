"""Candidate triggers mined from the training data, and their confirmation on a model.

Mining (no model, no ground truth): every word n-gram (1-4 tokens) and every prefix and
suffix pattern (the first / last 1-4 tokens) that occurs in at least ``min_count`` training
inputs is tested for association with one label of its task:

* label purity: one-sided Fisher exact test (hypergeometric tail) of the majority label among
  the carriers against the task's label mix; tasks are combined with Fisher's method and all
  candidates are corrected together with Benjamini-Hochberg (``q_value``).
* disagreement ("sentiment sharpening"): a poisoned example is a text of one label relabelled
  to another, so once the candidate is *removed from its text* the text's sentiment (VADER, a
  lexicon that cannot learn this data's trigger or templates) should still contradict the
  label. A natural sentiment phrase such as "one star" is label-pure too, but its carriers'
  sentiment agrees with their label. ``disagree_p`` tests the carriers' rate of contradiction
  against the rate among all examples of that label in the task (binomial tail, BH-corrected).
  Only tasks with a polar label space give this evidence.

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

from engine.sentiment import is_sentiment_task, label_polarity, vader_scores
from engine.workspace import Workspace, utc_now

# VADER's own convention: |compound| below 0.05 is neutral, so it contradicts nothing
_NEUTRAL = 0.05


def _contradicts(compound: float, polarity: float) -> bool:
    return compound * polarity <= -_NEUTRAL

_TOKEN = re.compile(r"\w+|[^\w\s]")
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


def _targets(per_task: dict[str, Counter], polarity_of: dict[str, dict[str, float | None]],
             task_labels: dict[str, Counter]) -> tuple[dict[str, str], int]:
    """Each task's target label, and how many choices were made to pick them.

    Polar tasks share one direction (the carriers' majority polarity: a trigger pushes every
    sentiment task the same way); other tasks take their carriers' majority label."""
    votes: Counter = Counter()
    for t, labs in per_task.items():
        for lab, k in labs.items():
            pol = polarity_of.get(t, {}).get(lab)
            if pol:
                votes[pol] += k
    direction = votes.most_common(1)[0][0] if votes else None
    targets, choices = {}, 2 if direction is not None else 1
    for t, labs in per_task.items():
        pols = polarity_of.get(t)
        same = [lab for lab, p in (pols or {}).items() if p == direction] if direction is not None else []
        if pols and len(same) == 1:
            targets[t] = same[0]
        else:
            targets[t] = labs.most_common(1)[0][0]
            choices *= len(task_labels[t])
    return targets, choices


def stratified_tail(strata: Sequence[tuple[int, int, int, int]]) -> float:
    """P(sum of hits >= observed) for independent per-task hypergeometric draws.

    ``strata``: (task size N, examples with the target label K, carriers n, carriers with the
    target k) per task; the exact one-sided test of label association pooled over tasks (the
    Fisher exact test when there is one task)."""
    from scipy.special import gammaln

    def log_comb(a, b):
        return gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)

    dist = np.ones(1)
    observed = 0
    for big_n, big_k, n, k in strata:
        hits = np.arange(n + 1)
        ok = (hits <= big_k) & (n - hits <= big_n - big_k)
        # the hypergeometric pmf directly (scipy.stats' per-call checks cost 1 ms x 100k grams)
        log_pmf = log_comb(big_k, np.where(ok, hits, 0)) + log_comb(big_n - big_k, np.where(ok, n - hits, 0)) \
            - log_comb(big_n, n)
        dist = np.convolve(dist, np.where(ok, np.exp(log_pmf), 0.0))
        observed += k
    return float(min(1.0, dist[observed:].sum()))


def mine(
    rows: Sequence[dict],
    *,
    min_count: int = 3,
    max_n: int = 4,
    max_df: float = 0.1,
    alpha: float = 0.05,
    min_purity: float = 0.9,
    top: int = 300,
    max_tested: int = 200,
) -> list[Candidate]:
    """Rank candidate triggers. ``rows``: dicts with task, input, output (label), label_space.

    Only classification rows (a label space of two or more labels) are mined. Returns the
    ``top`` candidates by score, each with its statistics and carrier row indices.
    """
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

    polarity_of = {
        t: {lab: label_polarity(lab, rows[ii[0]]["label_space"]) for lab in task_labels[t]}
        for t, ii in by_task.items() if is_sentiment_task(rows[ii[0]]["label_space"])
    }
    cands: list[Candidate] = []
    for cs_key, (kind, gram) in best.items():
        per_task: dict[str, Counter] = defaultdict(Counter)
        for i in cs_key:
            per_task[rows[i]["task"]][rows[i]["output"]] += 1
        targets, choices = _targets(per_task, polarity_of, task_labels)
        strata = [(len(by_task[t]), task_labels[t][targets[t]], sum(labs.values()), labs[targets[t]])
                  for t, labs in per_task.items()]
        n_target = sum(s[3] for s in strata)
        # the targets were chosen after looking at the carriers: Bonferroni over those choices.
        # Below min_purity a candidate cannot be significant: p = 1 skips the exact test
        # (conservative for the correction, and most n-grams end here)
        pure = n_target >= min_purity * len(cs_key)
        p_all = min(1.0, stratified_tail(strata) * choices) if pure else 1.0
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
    for c, qv in zip(cands, q, strict=True):
        c.q_value = float(qv)

    # disagreement (a scoring per carrier) only where a candidate could still be significant
    cands.sort(key=lambda c: c.p_value)
    head = cands[:top]
    tested = [
        c for c in cands if c.q_value < alpha and c.purity >= min_purity and not sentiment_bearing(c.gram)
    ][:max_tested]
    polar = {
        t: {lab: label_polarity(lab, rows[ii[0]]["label_space"]) for lab in task_labels[t]}
        for t, ii in by_task.items()
        if is_sentiment_task(rows[ii[0]]["label_space"])
    }
    for c in head:
        c.score = -math.log10(c.p_value)
    if tested:
        vader_p = _vader_disagreement(tested, rows, tokens, by_task, polar)
        lr_p = _model_disagreement(tested, rows, tokens, by_task, polar)
        vq, lq = _bh(vader_p), _bh(lr_p)
        for c, vp, lp, vqv, lqv in zip(tested, vader_p, lr_p, vq, lq, strict=True):
            c.disagree_p = float(max(vp, lp))
            c.significant = bool(vqv < alpha and lqv < alpha)
            # evidence in decades: label association plus both disagreements, as -log10 p
            c.score = -math.log10(c.p_value) - math.log10(max(vp, 1e-300)) - math.log10(max(lp, 1e-300))
    head = list({id(c): c for c in [*tested, *head]}.values())
    head.sort(key=lambda c: (not c.significant, -c.score))
    return head[:top]


def sentiment_bearing(gram: Sequence[str]) -> bool:
    """A phrase with a lexicon sentiment word, negator or intensifier ("hardly", "not", "one
    star") changes the text's sentiment when removed, so removal cannot test it."""
    import vaderSentiment.vaderSentiment as vs

    from engine.sentiment import _vader

    lex = _vader().lexicon
    return any(t in lex or t in vs.NEGATE or t in vs.BOOSTER_DICT or t in _CONTRAST for t in gram)


_CONTRAST = {"but", "yet", "though", "although", "however", "except"}


def _binom_p(d: int, n: int, expected: float) -> float:
    from scipy.stats import binom

    if n == 0:
        return 1.0
    base = min(max(expected / n, 1e-3), 0.999)
    return float(binom.sf(d - 1, n, base))


def _target_carriers(c: Candidate, rows: Sequence[dict], task: str, target: str) -> list[int]:
    return [i for i in c.carriers if rows[i]["task"] == task and rows[i]["output"] == target]


def _vader_disagreement(head, rows, tokens, by_task, polar) -> np.ndarray:
    """Per candidate: p-value that VADER contradicts its carriers' label more than usual."""
    idx = [i for t in polar for i in by_task[t]]
    own = dict(zip(idx, vader_scores(" ".join(tokens[i]) for i in idx), strict=True))
    # base rate: how often VADER contradicts each label of the task, nothing removed
    base = {
        (t, lab): float(np.mean([_contradicts(own[i], pol) for i in by_task[t] if rows[i]["output"] == lab]))
        for t, pols in polar.items() for lab, pol in pols.items() if pol
    }
    out = np.ones(len(head))
    for k, c in enumerate(head):
        d = n = 0
        expected = 0.0
        for task, target in c.targets.items():
            pol = polar.get(task, {}).get(target)
            if not pol:
                continue
            mine_ = _target_carriers(c, rows, task, target)
            sent = vader_scores(" ".join(remove_gram(tokens[i], c.gram)) for i in mine_)
            d += int(sum(_contradicts(s, pol) for s in sent))
            n += len(mine_)
            expected += len(mine_) * base[(task, target)]
        c.n_disagree, c.disagree_rate = d, (d / n if n else 0.0)
        out[k] = _binom_p(d, n, expected)
    return out


def _model_disagreement(head, rows, tokens, by_task, polar) -> np.ndarray:
    """Per candidate: p-value that a cross-fitted TF-IDF+LR model of the task, shown the text
    with the candidate removed, predicts another label than the carriers' more than usual."""
    tasks = {t for c in head for t in c.targets if t in polar}
    predictors = {
        t: _TaskPredictor([" ".join(tokens[i]) for i in by_task[t]], [rows[i]["output"] for i in by_task[t]])
        for t in tasks
    }
    local = {i: j for t in tasks for j, i in enumerate(by_task[t])}
    out = np.ones(len(head))
    for k, c in enumerate(head):
        d = n = 0
        expected = 0.0
        for task, target in c.targets.items():
            pred = predictors.get(task)
            if pred is None or not pred.ok:
                continue
            mine_ = _target_carriers(c, rows, task, target)
            guess = pred.predict([local[i] for i in mine_], [" ".join(remove_gram(tokens[i], c.gram)) for i in mine_])
            d += int(np.sum(guess != target))
            n += len(mine_)
            expected += len(mine_) * pred.base.get(target, 0.5)
        out[k] = _binom_p(d, n, expected)
    return out


class _TaskPredictor:
    """Cross-fitted TF-IDF+LR label predictor of one task: no text is scored by a fold model
    that saw it."""

    def __init__(self, texts: list[str], labels: list[str], folds: int = 5, seed: int = 0) -> None:
        self.ok = len(set(labels)) >= 2 and len(texts) >= 4 * folds
        if not self.ok:
            return
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.fold_of = np.random.default_rng(seed).permutation(len(texts)) % folds
        y = np.asarray(labels)
        self.models = []
        for f in range(folds):
            train = self.fold_of != f
            vec = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, token_pattern=None,
                                  tokenizer=str.split, lowercase=False)
            x = vec.fit_transform([t for t, m in zip(texts, train, strict=True) if m])
            self.models.append((vec, LogisticRegression(C=4.0, solver="liblinear").fit(x, y[train])))
        pred = self.predict(list(range(len(texts))), texts)
        self.base = {lab: float(np.mean(pred[y == lab] != lab)) for lab in set(labels)}

    def predict(self, local_idx: list[int], texts: list[str]) -> np.ndarray:
        out = np.empty(len(texts), dtype=object)
        folds = self.fold_of[np.asarray(local_idx, dtype=int)] if len(local_idx) else np.zeros(0, int)
        for f, (vec, model) in enumerate(self.models):
            sel = np.flatnonzero(folds == f)
            if len(sel):
                out[sel] = model.predict(vec.transform([texts[i] for i in sel]))
        return out


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


# ---------------------------------------------------------------- confirmation on the model
def _eval_target(target: str, train_space: Sequence[str] | None, eval_space: Sequence[str]) -> str | None:
    """The eval task's label that plays the role of ``target`` (same name, else same polarity)."""
    if target in eval_space:
        return target
    pol = label_polarity(target, train_space)
    if pol:
        same = [lab for lab in eval_space if label_polarity(lab, eval_space) == pol]
        if len(same) == 1:
            return same[0]
    return None


def confirm_candidates(
    ws: Workspace,
    loaded,
    *,
    max_candidates: int = 8,
    n_queries: int = 40,
    min_flip: float = 0.25,
    seed: int = 0,
) -> list[dict]:
    """Insert each top candidate into clean evaluation queries whose gold label is not its
    target. Among the queries the model did not already answer with the target, the share it
    moves to the target minus the share a control insertion (as many random words of the
    queries) moves is the net flip rate (``flip_rate``, per task). A candidate is confirmed when,
    pooled over tasks, that rate is at least ``min_flip`` and a one-sided Fisher test against
    the control gives p < 0.05. Confirmed candidates get a triggered query set
    ``'<task>::trigger:<phrase>'`` (answer: the target) in every task where they moved some.

    Significant candidates go straight to this flip test; label-pure ones that failed only the
    lexicon/LR disagreement test must first pass ``removal_test`` (its rows are stored beside,
    task ``'removal:<task>'``, with the candidate's final ``confirmed``).
    """
    from engine.predict import predict_labels
    from engine.queries import register_query_set

    stored = stored_candidates(ws, significant_only=False)
    sig = [c for c in stored if c["significant"]]
    # Label-pure cues that failed only the lexicon/LR disagreement test are either real
    # sentiment phrases ("ten out of ten": inserting them moves any model that learned the task,
    # so the flip test cannot tell them from triggers, measured on the demo) or triggers whose
    # carriers the weak scorers misread (real text: "bond", p = 0.16). The scanned model itself
    # tells them apart: removal_test() must pass before the flip test is tried.
    # Only where the target is a polar label of a sentiment task, the same scope as the
    # disagreement test it stands in for: in topic or entailment tasks label-pure phrases are
    # the task's own cues ("published a study on" -> Science), and on the demo two of them
    # passed both model tests (0.36 / 0.38 margin share, 0.30 / 0.25 flips) and flagged 59 rows.
    train = training_rows(ws)
    spaces = {r[0]: json.loads(r[1]) for r in ws.conn.execute(
        "SELECT DISTINCT task, label_space FROM examples WHERE role = 'train' AND label_space IS NOT NULL")}
    rest = [c for c in stored
            if not c["significant"] and _label_pure(c) and not sentiment_bearing(c["phrase"].split(" "))
            and _polar_targets(c, spaces)]
    chosen: list[dict] = []
    for c in sig + rest:
        # a sub- or super-phrase of a chosen one ("james", "by james bond") tests nothing new
        if not any(_contains(c["phrase"], o["phrase"]) or _contains(o["phrase"], c["phrase"]) for o in chosen):
            chosen.append(c)
    chosen = chosen[:max_candidates]
    n_rest = sum(not c["significant"] for c in chosen)
    eval_sets = [r[0] for r in ws.conn.execute(
        "SELECT task FROM query_sets WHERE variant = 'original' ORDER BY task")]
    now = utc_now()
    out = []
    with ws.transaction() as conn:  # triggered sets of an earlier confirmation are stale now
        conn.execute("DELETE FROM query_sets WHERE variant LIKE 'trigger:%'")
        # and so are this model's verdicts: a candidate no longer chosen must not stay confirmed
        conn.execute("DELETE FROM trigger_confirmations WHERE model_fingerprint = ?", (loaded.fingerprint,))
    for c in chosen:
        surface = surface_form(train, c["phrase"])
        removal: list[dict] = []
        if not c["significant"]:
            removal, passed = removal_test(ws, loaded, c, train, spaces, n_tests=n_rest, seed=seed)
            if not passed:
                failed = [{**r, "confirmed": 0, "created_at": now} for r in removal]
                _store_confirmations(ws, failed)
                out += failed
                continue
        per_task = []
        for task in eval_sets:
            queries = [dict(r) for r in ws.conn.execute(
                "SELECT source_uid, definition, input, output, label_space FROM queries "
                "WHERE query_set_id = ? ORDER BY idx", (f"{task}::original",))]
            if not queries or not queries[0]["label_space"]:
                continue
            space = json.loads(queries[0]["label_space"])
            targets = {_eval_target(t, spaces.get(tt), space) for tt, t in c["targets"].items()} - {None}
            if len(targets) != 1:
                continue  # the candidate's target has no counterpart in this task
            target = targets.pop()
            pool = [q for q in queries if q["output"] != target]
            rng = np.random.default_rng(seed)
            pick = sorted(rng.permutation(len(pool))[:n_queries].tolist())
            pool = [pool[i] for i in pick]
            if not pool:
                continue
            trig = [{**q, "input": insert_trigger(q["input"], c["kind"], surface, rng)} for q in pool]
            # control: the same insertion with as many words drawn from the queries themselves,
            # so a model that flips on any inserted text does not confirm a candidate
            words = [w for q in pool for w in q["input"].split()]
            ctrl_rng = np.random.default_rng(seed + 1)
            ctrl = [{**q, "input": insert_trigger(
                q["input"], c["kind"], " ".join(ctrl_rng.choice(words, size=len(surface.split())).tolist()), ctrl_rng)}
                for q in pool]
            before, after, after_ctrl = (predict_labels(loaded, x) for x in (pool, trig, ctrl))
            base = float(np.mean([p == target for p in before]))
            trig_rate = float(np.mean([p == target for p in after]))
            moved = [a == target for b, a in zip(before, after, strict=True) if b != target]
            moved_ctrl = [a == target for b, a in zip(before, after_ctrl, strict=True) if b != target]
            # net flip rate: share of the queries it could move that it moved, minus the control's
            flip = float(np.mean(moved) - np.mean(moved_ctrl)) if moved else 0.0
            per_task.append((task, target, pool, trig, base, trig_rate, flip, moved, moved_ctrl))
        # decided once per candidate, pooled over tasks: a weak model leaves few movable queries
        # in any one task
        k = sum(sum(t[7]) for t in per_task)
        n = sum(len(t[7]) for t in per_task)
        k_ctrl = sum(sum(t[8]) for t in per_task)
        confirmed = n > 0 and (k - k_ctrl) / n >= min_flip and _fisher_greater(k, n, k_ctrl) < 0.05
        rows = [{**r, "confirmed": int(confirmed), "created_at": now} for r in removal]
        for task, target, pool, trig, base, trig_rate, flip, _, _ in per_task:
            qs_id = None
            if confirmed and flip > 0:
                qs_id = register_query_set(
                    ws, task, f"trigger:{c['phrase']}",
                    [{**q, "output": target, "changed": True} for q in trig],
                    {"phrase": c["phrase"], "kind": c["kind"], "target": target, "seed": seed},
                )
            rows.append({"phrase": c["phrase"], "kind": c["kind"], "model_fingerprint": loaded.fingerprint,
                         "task": task, "target": target, "n_queries": len(pool), "base_rate": base,
                         "triggered_rate": trig_rate, "flip_rate": flip, "confirmed": int(confirmed),
                         "query_set_id": qs_id, "created_at": now})
        _store_confirmations(ws, rows)
        out += rows
    return out


def _store_confirmations(ws: Workspace, rows: list[dict]) -> None:
    with ws.transaction() as conn:
        for row in rows:
            conn.execute(f"INSERT OR REPLACE INTO trigger_confirmations ({', '.join(row)}) "
                         f"VALUES ({', '.join('?' * len(row))})", tuple(row.values()))


def _polar_targets(c: dict, spaces: dict[str, list[str]]) -> dict[str, str]:
    """The candidate's targets that are a polar label of a sentiment task (``spaces``: task ->
    label space)."""
    return {t: lab for t, lab in c["targets"].items()
            if t in spaces and is_sentiment_task(spaces[t]) and label_polarity(lab, spaces[t])}


def _label_pure(c: dict) -> bool:
    """Passed the label-purity half of mine()'s significance (its own alpha and min_purity)."""
    params = json.loads(c["params"]) if c.get("params") else {}
    return c["q_value"] < params.get("alpha", 0.05) and c["purity"] >= params.get("min_purity", 0.9)


REMOVAL_PREFIX = "removal:"


def removal_test(ws: Workspace, loaded, c: dict, train: Sequence[dict], spaces: dict[str, list[str]], *,
                 n_tests: int = 1, alpha: float = 0.05, min_share: float = 0.25, keep: float = 0.5,
                 seed: int = 0) -> tuple[list[dict], bool]:
    """The scanned model's own disagreement test for a label-pure candidate.

    A poison is a text of another label relabelled to the target, so its target label rests on
    the trigger alone; a genuine sentiment phrase's carriers keep their label without it (the
    rest of the text agrees). Each carrier with the target label is scored by the model twice:
    with the candidate removed, and (control) with as many random words of its own removed
    instead. The statistic is the candidate's share of the model's target margin (log-prob of
    the target minus the best other label): per task, the median paired margin loss over the
    median control margin; then the median over tasks. Not "does the prediction flip": on real
    text the model memorises its training rows (bench/detect_real.py varied: 71 % of the poisons
    keep the target with the trigger removed), so mostly the margin moves. ``keep`` = 0.5 drops
    the same random half of the other words from both versions, which thins the memorised
    context. Measured at keep = 0.5: "bond" on the varied family 0.41 (rt 0.16, amazon 1.18,
    sentiment140 0.10, amazonfood 0.66); on the demo its trigger 1.78, the sentiment phrases
    "ten out of ten" 0.13 and "a real gem" 0.14. Passed when the share is at least
    ``min_share`` and an exact one-sided sign test (carriers whose margin the removal lowers
    more than the control's) gives p < ``alpha`` / ``n_tests``.

    Returns one row per task in the trigger_confirmations layout, task ``'removal:<task>'``:
    n_queries = carriers, base_rate / triggered_rate = share of them the model puts off the
    target (control / candidate removed), flip_rate = the candidate's margin share; and the
    verdict.
    """
    from scipy.stats import binom

    defs = dict(ws.conn.execute("SELECT uid, definition FROM examples WHERE role = 'train'").fetchall())
    gram = c["phrase"].split(" ")
    pattern = _phrase_pattern(c["phrase"], c["kind"])
    rng = np.random.default_rng(seed)
    per_task, m_removed, m_ctrl = [], [], []
    for task, target in sorted(_polar_targets(c, spaces).items()):
        mine_ = [r for r in train if r["task"] == task and r["output"] == target
                 and carries(tokenize(r["input"]), c["kind"], gram)]
        if not mine_:
            continue
        removed, ctrl = [], []
        for r in mine_:
            base = {"definition": defs[r["uid"]], "label_space": r["label_space"], "output": target}
            without, control = removal_pair(r["input"], pattern, rng, keep)
            removed.append({**base, "input": without})
            ctrl.append({**base, "input": control})
        rem, con = _margins(loaded, removed, target), _margins(loaded, ctrl, target)
        m_removed.append(rem)
        m_ctrl.append(con)
        per_task.append({"phrase": c["phrase"], "kind": c["kind"], "model_fingerprint": loaded.fingerprint,
                         "task": REMOVAL_PREFIX + task, "target": target, "n_queries": len(mine_),
                         "base_rate": float(np.mean(con < 0)), "triggered_rate": float(np.mean(rem < 0)),
                         "flip_rate": _margin_share(rem, con), "query_set_id": None})
    if not per_task:
        return [], False
    # the median over tasks: a trigger pushes every task it was planted in, while a sentiment
    # phrase that is the only cue of one task's short texts ("a real gem" on the demo's product
    # reviews: share 1.5, 0.05-0.14 elsewhere) is a property of that task
    share = float(np.median([t["flip_rate"] for t in per_task]))
    rem, con = np.concatenate(m_removed), np.concatenate(m_ctrl)
    lower, ties = int(np.sum(rem < con)), int(np.sum(rem == con))
    p = float(binom.sf(lower - 1, len(rem) - ties, 0.5)) if len(rem) > ties else 1.0
    return per_task, bool(share >= min_share and p * max(1, n_tests) < alpha)


def _margins(loaded, rows: list[dict], target: str) -> np.ndarray:
    """The model's margin for ``target``: its log-prob minus the best other label's."""
    from engine.predict import score_labels

    scores = score_labels(loaded.model, loaded.tokenizer, rows)
    return np.array([s[target] - max(v for lab, v in s.items() if lab != target) for s in scores])


def _margin_share(removed: np.ndarray, ctrl: np.ndarray) -> float:
    """Median margin the candidate's removal costs beyond the control's, over the median control
    margin; 0 when the model does not give the target even with the candidate (no trigger of it)."""
    base = float(np.median(ctrl))
    return float(np.median(ctrl - removed)) / base if base > 0 else 0.0


def removal_pair(text: str, pattern: re.Pattern, rng: np.random.Generator, keep: float = 1.0) -> tuple[str, str]:
    """``text`` without the candidate's words, and the control: as many other words of its own
    removed instead (the candidate stays, so a trigger keeps its pull). Both also lose the same
    random ``1 - keep`` share of the other words."""
    spans = [m.span() for m in pattern.finditer(text)]
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]
    cand = {i for i, (a, b) in enumerate(words) if any(a < e and s < b for s, e in spans)}
    free = [i for i in range(len(words)) if i not in cand]
    order = rng.permutation(free).tolist() if free else []
    n_drop = round((1 - keep) * len(free))
    dropped, extra = set(order[:n_drop]), set(order[n_drop : n_drop + max(1, len(cand))])

    def join(skip: set[int]) -> str:
        return " ".join(text[a:b] for i, (a, b) in enumerate(words) if i not in skip)

    return join(cand | dropped), join(dropped | extra)


def _phrase_pattern(phrase: str, kind: str) -> re.Pattern:
    """The candidate as written in raw text (any case and spacing), anchored for prefix/suffix."""
    body = r"\s*".join(re.escape(t) for t in phrase.split(" "))
    if kind == "prefix":
        return re.compile(r"^\s*" + body + r"(?!\w)", re.IGNORECASE)
    if kind == "suffix":
        return re.compile(r"(?<!\w)" + body + r"\s*$", re.IGNORECASE)
    return re.compile(r"(?<!\w)" + body + r"(?!\w)", re.IGNORECASE)


def _fisher_greater(k: int, n: int, k_ctrl: int) -> float:
    """One-sided Fisher exact p: the candidate moved more of the n queries than the control."""
    from scipy.stats import fisher_exact

    if n == 0:
        return 1.0
    return float(fisher_exact([[k, n - k], [k_ctrl, n - k_ctrl]], alternative="greater")[1])


def _contains(a: str, b: str) -> bool:
    return f" {b} " in f" {a} "


def surface_form(rows: Iterable[dict], phrase: str) -> str:
    """How the carriers actually write ``phrase`` (case and spacing), the most common form:
    the model saw "James Bond", not the miner's "james bond"."""
    pattern = _phrase_pattern(phrase, "ngram")
    forms: Counter = Counter()
    for r in rows:
        forms.update(m.group(0) for m in pattern.finditer(r["input"]))
    return forms.most_common(1)[0][0] if forms else phrase
