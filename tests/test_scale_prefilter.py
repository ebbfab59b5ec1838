"""TF-IDF prefilter: ranking, candidate union, settings parsing, and what is recorded."""

from __future__ import annotations

import numpy as np
import pytest
from scale_fixtures import designed_workspace

from engine import prefilter
from engine.errors import UserError
from engine.prefilter import PrefilterSettings, parse_candidates, similarity_matrix


def test_similarity_ranks_the_matching_domain_first() -> None:
    train = ["the film was great", "the film was awful", "shares fall on profit", "lions win the cup"]
    sims = similarity_matrix(train, [["a great film"], ["profit and shares"]])
    assert sims.shape == (2, 4)
    assert list(np.argsort(-sims[0])[:2]) == [0, 1]
    assert int(np.argmax(sims[1])) == 2
    assert sims[0, 3] == 0.0  # no word in common


def test_mean_aggregate_is_mean_of_per_query_cosines() -> None:
    from sklearn.feature_extraction.text import TfidfVectorizer

    train = ["red apple pie", "green apple", "blue sky today", "red sky at night"]
    queries = ["red apple", "night sky", "apple"]
    got = similarity_matrix(train, [queries], "mean")[0]
    vec = TfidfVectorizer(sublinear_tf=True).fit(train)
    t, q = vec.transform(train), vec.transform(queries)
    want = (t @ q.T).toarray().mean(axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    got_max = similarity_matrix(train, [queries], "max")[0]
    np.testing.assert_allclose(got_max, (t @ q.T).toarray().max(axis=1), rtol=1e-12)


@pytest.mark.parametrize(("text", "want"), [("500", 500), ("0.1", 0.1), ("10%", 0.1), ("1", 1), ("1.0", 1),
                                            ("250.0", 250)])
def test_parse_candidates(text: str, want: float) -> None:
    got = parse_candidates(text)
    assert got == want and type(got) is type(want)


@pytest.mark.parametrize("text", ["0", "-3", "1.5", "abc", "0%", "150%", "nan", ""])
def test_parse_candidates_rejects(text: str) -> None:
    with pytest.raises(UserError, match="candidates"):
        parse_candidates(text)


def test_per_set_count() -> None:
    assert PrefilterSettings(5).per_set(40) == 5
    assert PrefilterSettings(500).per_set(40) == 40
    assert PrefilterSettings(0.1).per_set(40) == 4
    assert PrefilterSettings(0.01).per_set(40) == 1  # never zero
    assert PrefilterSettings(0.26).per_set(10) == 3  # rounds up


def test_select_takes_the_union_of_each_query_sets_top(tmp_path) -> None:
    ws, uids = designed_workspace(tmp_path / "w.poison")
    sel = prefilter.select(ws, PrefilterSettings(5))
    assert sel.n_train == 40
    assert set(sel.per_set) == {"review_polarity::original", "headline_topic::original"}
    movie_top = sel.per_set["review_polarity::original"]
    news_top = sel.per_set["headline_topic::original"]
    assert len(movie_top) == 5 and set(movie_top) <= set(uids["movie"])
    assert len(news_top) == 5 and set(news_top) <= set(uids["news"])
    assert set(sel.uids) == set(movie_top) | set(news_top)
    assert len(sel.uids) == 10 and sel.n_skipped == 30
    # candidates come back in ingestion order, and each knows where it ranked best
    order = {u: i for i, u in enumerate(sel.train_uids)}
    assert sel.uids == sorted(sel.uids, key=order.__getitem__)
    assert sel.best[movie_top[0]][:2] == ("review_polarity::original", 1)


def test_select_is_deterministic_and_restricts_to_named_sets(tmp_path) -> None:
    ws, uids = designed_workspace(tmp_path / "w.poison")
    a = prefilter.select(ws, PrefilterSettings(0.1))
    b = prefilter.select(ws, PrefilterSettings(0.1))
    assert a.uids == b.uids and a.train_sha256 == b.train_sha256
    only = prefilter.select(ws, PrefilterSettings(4), ["headline_topic::original"])
    assert set(only.uids) <= set(uids["news"]) and len(only.uids) == 4


def test_record_and_latest(tmp_path) -> None:
    ws, _ = designed_workspace(tmp_path / "w.poison")
    sel = prefilter.select(ws, PrefilterSettings(3))
    pid = prefilter.record(ws, sel)
    prefilter.attach_run(ws, pid, "run-1")
    got = prefilter.latest(ws, "run-1")
    assert got is not None and got["id"] == pid
    assert got["n_train"] == 40 and got["n_candidates"] == len(sel.uids)
    assert got["params"] == {"method": "tfidf", "candidates": 3, "aggregate": "mean"}
    assert got["per_set"] == {"review_polarity::original": 3, "headline_topic::original": 3}
    stored = {r[0] for r in ws.conn.execute("SELECT uid FROM prefilter_candidates WHERE prefilter_id = ?", (pid,))}
    assert stored == set(sel.uids)
    assert prefilter.latest(ws, "other-run") is None


def test_unscored_uids_come_from_the_influence_rows(tmp_path) -> None:
    ws, uids = designed_workspace(tmp_path / "w.poison")
    all_uids = uids["movie"] + uids["news"]
    sha = dict(ws.conn.execute("SELECT id, sha256 FROM query_sets").fetchall())
    movie = "review_polarity::original"
    with ws.transaction() as conn:
        for qs in sha:
            conn.executemany("INSERT INTO influence VALUES ('r', ?, ?, ?, 0.0)", [(qs, sha[qs], u) for u in all_uids[:30]])
        # one example scored for one set only: not fully scored
        conn.execute("INSERT INTO influence VALUES ('r', ?, ?, ?, 1.0)", (movie, sha[movie], all_uids[30]))
        # one scored against an older version of both sets: stale, so not scored
        for qs in sha:
            conn.execute("INSERT INTO influence VALUES ('r', ?, 'old-sha', ?, 1.0)", (qs, all_uids[31]))
    assert prefilter.unscored_train_uids(ws, "r") == all_uids[30:]
    assert prefilter.scored_train_uids(ws, "r") == all_uids[:30]
    assert prefilter.unscored_train_uids(ws, "no-such-run") == all_uids
    assert prefilter.scored_train_uids(ws, "no-such-run") == []


def test_select_errors_are_user_errors(tmp_path) -> None:
    from engine.workspace import Workspace

    ws = Workspace.create(tmp_path / "empty.poison")
    with pytest.raises(UserError, match="no training examples"):
        prefilter.select(ws, PrefilterSettings(3))
    ws2, _ = designed_workspace(tmp_path / "w.poison")
    with pytest.raises(UserError, match="no-such"):
        prefilter.select(ws2, PrefilterSettings(3), ["no-such::original"])
