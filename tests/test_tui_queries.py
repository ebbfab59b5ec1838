"""engine.review_queries: the queue's order, filters, counts and the detail of one example."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_fixtures import HOSTILE, make_workspace

from engine.decisions import decide
from engine.errors import UserError
from engine.review_queries import QueueFilter, ReviewQueries, score_state
from poison_tui.widgets.literal import visible


@pytest.fixture
def ws(tmp_path: Path):
    return make_workspace(tmp_path / "demo.poison", n=60)


def test_rank_order_and_rows(ws) -> None:
    q = ReviewQueries(ws)
    uids = q.ordered_uids()
    assert len(uids) == 60
    ranks = [r[0] for r in ws.conn.execute(
        "SELECT uid FROM detector_scores WHERE detector = 'ekfac_sentiment' ORDER BY rank")]
    assert uids == ranks
    assert uids[:4] == ["ex000000", "ex000001", "ex000002", "ex000003"]  # hostile rows rank first
    rows = q.rows(uids[:5])
    top = rows["ex000000"]
    assert top.det_rank == 1 and top.flagged and top.n_flagging == 2
    assert top.preview == HOSTILE[0]
    assert top.polarity == 1.0 and top.sentiment == -0.6
    # mean influence: original queries push up, transformed ones down for a poison
    assert top.infl_original > 0.5 and top.infl_transformed < -0.4
    assert len(rows["ex000003"].preview) == 240  # the 4,000-char line is cut for the queue
    # the head the first paint uses is the head of the full order
    head, total = q.first_uids(10)
    assert head == uids[:10] and total == 60


def test_filters_counts_and_sorts(ws) -> None:
    q = ReviewQueries(ws)
    decide(ws, ["ex000000", "ex000001"], "remove", reason="trigger_phrase", actor="t")
    decide(ws, ["ex000010"], "keep", actor="t")
    q.reload_statuses(["ex000000", "ex000001", "ex000010"])
    assert q.status_counts() == {"undecided": 57, "keep": 1, "quarantine": 0, "remove": 2}
    assert set(q.ordered_uids(QueueFilter(statuses=("remove",)))) == {"ex000000", "ex000001"}
    assert len(q.ordered_uids(QueueFilter(statuses=("undecided",)))) == 57
    sst = q.ordered_uids(QueueFilter(task="sst2_polarity"))
    assert sst and all(q.rows([u])[u].task == "sst2_polarity" for u in sst)
    high = q.ordered_uids(QueueFilter(min_score=3.0))
    assert high == q.ordered_uids(QueueFilter(flagged_only=True))
    assert all(q.rows([u])[u].score >= 3.0 for u in high)
    # search is a literal substring, case-insensitive: '%' is not a wildcard
    bond = q.ordered_uids(QueueFilter(search="james BOND"))
    assert bond and all("james bond" in q.detail(u).input.lower() for u in bond)
    assert q.ordered_uids(QueueFilter(search="%")) == []
    by_score = q.ordered_uids(sort="score")
    scores = [q.rows([u])[u].score for u in by_score]
    assert scores == sorted(scores, reverse=True)
    ingestion = q.ordered_uids(sort="ingestion")
    assert ingestion == sorted(ingestion)
    by_status = q.ordered_uids(sort="status")
    assert by_status[0] not in {"ex000000", "ex000001", "ex000010"}  # undecided first
    assert by_status[-2:] == ["ex000000", "ex000001"]  # remove last
    with pytest.raises(UserError, match="unknown sort"):
        q.ordered_uids(sort="bogus")
    with pytest.raises(UserError, match="unknown status"):
        q.ordered_uids(QueueFilter(statuses=("maybe",)))


def test_detail_has_findings_rules_and_breakdown(ws) -> None:
    d = ReviewQueries(ws).detail("ex000001")
    assert d.input == HOSTILE[1]  # stored untouched; escaping is the view's job
    assert [f.detector for f in d.findings] == ["ekfac_sentiment", "trigger_ngram"]
    assert d.findings[0].is_default and d.findings[0].flagged
    assert "James Bond" in d.findings[1].rule
    assert [(b.task, b.variant) for b in d.influence] == [
        ("poem_sentiment", "original"), ("poem_sentiment", "negated"), ("poem_sentiment", "positive_shift"),
        ("review_polarity", "original"), ("review_polarity", "negated"), ("review_polarity", "positive_shift"),
    ]
    assert d.influence[0].score > 0 > d.influence[1].score
    assert ReviewQueries(ws).detail("nope") is None


def test_fallbacks_and_staleness(tmp_path: Path) -> None:
    bare = make_workspace(tmp_path / "bare.poison", n=5, scores=False)
    state = score_state(bare)
    assert state.detector is None and state.needs_compute
    assert "ingestion order" in state.notice
    assert ReviewQueries(bare).ordered_uids() == [f"ex{i:06d}" for i in range(5)]

    ws = make_workspace(tmp_path / "x.poison", n=5)
    ws.set_meta("default_detector", "gone")
    state = score_state(ws)
    assert state.detector == "ekfac_sentiment" and "'gone' has no scores" in state.notice
    assert not state.stale
    ws.conn.execute("UPDATE query_sets SET sha256 = 'changed' WHERE id = 'poem_sentiment::negated'")
    state = score_state(ws)
    assert state.stale == ("query set poem_sentiment::negated changed since influence was computed",)
    assert state.needs_compute


def test_visible_makes_controls_and_markup_inert() -> None:
    shown = visible("\x1b[31mred\x1b[0m [bold]b[/bold] \x07\x00\x7f\x9b\u202e\u200b")
    assert "\x1b" not in shown and "␛[31mred␛[0m" in shown
    assert "[bold]b[/bold]" in shown
    assert "␇␀␡⟨U+009B⟩⟨U+202E⟩⟨U+200B⟩" in shown
    assert all(ch.isprintable() or ch == " " for ch in shown)
    assert visible("a\nb", keep_newlines=True) == "a⏎\nb"
    assert visible("a\nb") == "a␊b"
