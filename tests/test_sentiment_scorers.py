"""Sentiment scorers: label polarity, VADER, the cross-fitted TF-IDF+LR scorer, the cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from detect_fixtures import sample_workspace

from engine.errors import UserError
from engine.sentiment import (
    CrossFitLR,
    cached_scores,
    is_sentiment_task,
    label_polarity,
    score_workspace,
    vader_scores,
)


def test_label_polarity_through_the_label_space() -> None:
    assert label_polarity("POS", ["POS", "NEG"]) == 1.0
    assert label_polarity("Negative", ["Positive", "Negative"]) == -1.0
    assert label_polarity("neutral", ["negative", "neutral", "positive"]) == 0.0
    assert label_polarity("joy", ["anger", "joy"]) == 1.0
    # a toxicity task's Yes/No carries no sentiment
    assert label_polarity("Yes", ["Yes", "No"]) is None and not is_sentiment_task(["Yes", "No"])
    assert label_polarity("positive", None) is None


def test_vader_signs() -> None:
    s = vader_scores(["A wonderful, moving film.", "Awful. I hated every minute.", "The train leaves at six."])
    assert s[0] > 0.5 and s[1] < -0.5 and abs(s[2]) < 0.05


def test_cross_fitting_never_scores_an_example_with_a_model_that_saw_it() -> None:
    pos = [f"great lovely film number {i}" for i in range(40)]
    neg = [f"awful dull film number {i}" for i in range(40)]
    # one positive example whose only words are unique to it: a model that saw it learns them
    texts, pol = [*pos, *neg, "zqxj vvkw zqxj"], [1] * 40 + [-1] * 40 + [1]
    model = CrossFitLR(folds=5, seed=0).fit(texts, pol)
    oof, full = model.oof()[-1], model.score(["zqxj vvkw zqxj"])[0]
    assert full > oof + 0.05  # the full model learned the unique words, the fold model could not
    assert np.all(model.oof()[:40] > 0) and np.all(model.oof()[40:80] < 0)


def test_score_workspace_caches_both_scorers(tmp_path: Path) -> None:
    ws, _ = sample_workspace(tmp_path, mode="name")
    n = score_workspace(ws, "vader")
    n_train = ws.conn.execute("SELECT COUNT(*) FROM examples WHERE role = 'train'").fetchone()[0]
    n_queries = ws.conn.execute("SELECT COUNT(*) FROM queries").fetchone()[0]
    assert n == n_train + n_queries
    assert score_workspace(ws, "vader") == 0  # cached
    assert score_workspace(ws, "tfidf_lr") == n
    lr = cached_scores(ws, "tfidf_lr")
    assert all(-1 <= v <= 1 for v in lr.values())
    # the trained scorer agrees with the labels of the sentiment tasks far more often than chance
    rows = ws.conn.execute("SELECT uid, output, label_space FROM examples WHERE role = 'train'").fetchall()
    import json

    hits = [np.sign(lr[r[0]]) == label_polarity(r[1], json.loads(r[2])) for r in rows
            if label_polarity(r[1], json.loads(r[2]))]
    assert np.mean(hits) > 0.8
    with pytest.raises(UserError, match="unknown sentiment scorer"):
        score_workspace(ws, "bert")
