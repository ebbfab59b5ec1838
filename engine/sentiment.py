"""Sentiment scores for training inputs and queries, and the polarity of a label.

Two scorers, both giving a score in [-1, 1]:

* ``vader``: the VADER lexicon (zero setup, no training data needed).
* ``tfidf_lr``: TF-IDF + logistic regression trained on the sentiment tasks present in the
  workspace, *cross-fitted*: each training example is scored by a model that never saw it
  (K folds); queries are scored by the model fit on all folds.

Scores are cached in the ``sentiment`` table under the example uid or ``'<query_set>#<idx>'``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from functools import lru_cache

import numpy as np

from engine.errors import UserError
from engine.workspace import Workspace

SCORERS = ("vader", "tfidf_lr")

# Label names (lower-cased) that carry a polarity. A label space gets polarities only when
# it holds at least one positive and one negative label: "Yes"/"No" of a toxicity task say
# nothing about sentiment, so they stay unmapped.
_POSITIVE = {"positive", "pos", "joy", "love", "happy", "good", "great", "optimism", "favorable"}
_NEGATIVE = {"negative", "neg", "anger", "sadness", "sad", "fear", "bad", "disgust", "unfavorable"}


def label_polarity(label: str, label_space: Sequence[str] | None) -> float | None:
    """+1 / -1 for a label of a polar label space, ``None`` when the space has no polarity."""
    if not label_space:
        return None
    names = {str(x).strip().lower() for x in label_space}
    if not (names & _POSITIVE and names & _NEGATIVE):
        return None
    key = label.strip().lower()
    if key in _POSITIVE:
        return 1.0
    if key in _NEGATIVE:
        return -1.0
    return 0.0  # e.g. "neutral" in a three-way space


def is_sentiment_task(label_space: Sequence[str] | None) -> bool:
    return label_polarity("", label_space) is not None


@lru_cache(maxsize=1)
def _vader():  # the analyzer loads its lexicon once (about 0.1 s)
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_scores(texts: Iterable[str]) -> np.ndarray:
    analyzer = _vader()
    return np.array([analyzer.polarity_scores(t)["compound"] for t in texts], dtype=float)


class CrossFitLR:
    """TF-IDF + logistic regression on polar examples, cross-fitted over ``folds``.

    ``fit`` takes the training texts with polarity +1/-1; ``oof`` gives every training text a
    score from the fold model that did not see it; ``score`` scores new texts with the model
    fit on everything. Scores are ``2 * P(positive) - 1``.
    """

    def __init__(self, folds: int = 5, seed: int = 0) -> None:
        self.folds, self.seed = folds, seed

    def _model(self):
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline

        return make_pipeline(
            TfidfVectorizer(ngram_range=(1, 2), min_df=2, sublinear_tf=True),
            LogisticRegression(C=4.0, solver="liblinear"),
        )

    def fit(self, texts: Sequence[str], polarity: Sequence[float]) -> CrossFitLR:
        y = np.asarray(polarity) > 0
        if len(set(y.tolist())) < 2:
            raise UserError("tfidf_lr needs positive and negative sentiment examples to train on")
        texts = list(texts)
        rng = np.random.default_rng(self.seed)
        fold_of = rng.permutation(len(texts)) % self.folds
        self._oof = np.zeros(len(texts))
        for f in range(self.folds):
            test = fold_of == f
            model = self._model().fit([t for t, m in zip(texts, test, strict=True) if not m], y[~test])
            self._oof[test] = model.predict_proba([t for t, m in zip(texts, test, strict=True) if m])[:, 1] * 2 - 1
        self._full = self._model().fit(texts, y)
        return self

    def oof(self) -> np.ndarray:
        return self._oof

    def score(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0)
        return self._full.predict_proba(list(texts))[:, 1] * 2 - 1


def score_workspace(ws: Workspace, scorer: str = "vader", folds: int = 5, seed: int = 0) -> int:
    """Score every training example and every query; cache in ``sentiment``. Returns #new scores.

    Keys already cached for this scorer are skipped, so a rerun costs nothing.
    """
    if scorer not in SCORERS:
        raise UserError(f"unknown sentiment scorer {scorer!r}; choose one of {', '.join(SCORERS)}")
    conn = ws.conn
    done = {r[0] for r in conn.execute("SELECT key FROM sentiment WHERE scorer = ?", (scorer,))}
    train = conn.execute(
        "SELECT uid, input, output, label_space FROM examples WHERE role = 'train' ORDER BY uid"
    ).fetchall()
    queries = conn.execute("SELECT query_set_id, idx, input FROM queries").fetchall()
    keyed = [(r["uid"], r["input"]) for r in train]
    keyed += [(f"{r['query_set_id']}#{r['idx']}", r["input"]) for r in queries]
    todo = [(k, t) for k, t in keyed if k not in done]
    if not todo:
        return 0
    scores: dict[str, float]
    if scorer == "vader":
        scores = dict(zip([k for k, _ in todo], vader_scores(t for _, t in todo).tolist(), strict=True))
    else:
        scores = _lr_scores(train, todo, folds, seed)
    with ws.transaction() as c:
        c.executemany(
            "INSERT OR REPLACE INTO sentiment (key, scorer, score) VALUES (?, ?, ?)",
            [(k, scorer, float(v)) for k, v in scores.items()],
        )
    return len(scores)


def _lr_scores(train, todo, folds: int, seed: int) -> dict[str, float]:
    polar = []
    for r in train:
        space = json.loads(r["label_space"]) if r["label_space"] else None
        p = label_polarity(r["output"], space)
        if p:  # +1 / -1 only; neutral and unmapped tasks do not train the scorer
            polar.append((r["uid"], r["input"], p))
    if not polar:
        raise UserError("tfidf_lr: the workspace has no training examples of a sentiment task")
    model = CrossFitLR(folds=folds, seed=seed).fit([t for _, t, _ in polar], [p for _, _, p in polar])
    oof = dict(zip([u for u, _, _ in polar], model.oof().tolist(), strict=True))
    rest = [(k, t) for k, t in todo if k not in oof]
    out = {k: oof[k] for k, _ in todo if k in oof}
    out.update(zip([k for k, _ in rest], model.score([t for _, t in rest]).tolist(), strict=True))
    return out


def cached_scores(ws: Workspace, scorer: str = "vader") -> dict[str, float]:
    return {
        r[0]: r[1] for r in ws.conn.execute("SELECT key, score FROM sentiment WHERE scorer = ?", (scorer,))
    }

