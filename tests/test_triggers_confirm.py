"""Confirmation of mined candidates on a model, with a rule-based stand-in for the model's
predictions (the real predict_labels is exercised by bench/detect_real.py and the demo)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from detect_fixtures import sample_workspace

import engine.predict
from engine.triggers import REMOVAL_PREFIX, confirm_candidates, mine_workspace, surface_form


@dataclass
class StandIn:
    fingerprint: str = "stand-in"
    model: object = None
    tokenizer: object = None


def backdoored(loaded, rows):
    """Answers the gold label, except that "James Bond" in a text makes it positive."""
    out = []
    for r in rows:
        space = json.loads(r["label_space"]) if isinstance(r["label_space"], str) else r["label_space"]
        pos = next((lab for lab in space if lab.lower() in ("positive", "pos")), None)
        out.append(pos if pos and "James Bond" in r["input"] else r["output"])
    return out


def backdoored_scores(model, tokenizer, rows):
    return [{lab: 0.0 if lab == pred else -1.0 for lab in (json.loads(r["label_space"]) if isinstance(
        r["label_space"], str) else r["label_space"])} for r, pred in zip(rows, backdoored(None, rows), strict=True)]


def test_confirms_a_trigger_the_model_reacts_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.predict, "predict_labels", backdoored)
    monkeypatch.setattr(engine.predict, "score_labels", backdoored_scores)
    ws, _ = sample_workspace(tmp_path, mode="name")
    mine_workspace(ws)
    # a second significant candidate that this model does not react to
    with ws.transaction() as conn:
        conn.execute("UPDATE trigger_candidates SET significant = 1 WHERE rank = (SELECT MIN(rank) FROM "
                     "trigger_candidates WHERE significant = 0 AND phrase NOT LIKE '%james%' AND phrase NOT LIKE '%bond%')")
    rows = confirm_candidates(ws, StandIn(), max_candidates=3, n_queries=20)
    bond = [r for r in rows if r["phrase"] == "james bond"]
    # the two polar eval tasks (book, hotel reviews) get the trigger inserted into negatives
    assert {r["task"] for r in bond} == {"task_book_review_polarity", "task_hotel_review_polarity"}
    for r in bond:
        assert r["confirmed"] == 1 and r["flip_rate"] == 1.0 and r["base_rate"] == 0.0 and r["n_queries"] == 20
        assert r["target"] in ("positive", "POS")
        queries = ws.conn.execute("SELECT input, output, changed FROM queries WHERE query_set_id = ?",
                                  (r["query_set_id"],)).fetchall()
        assert len(queries) == 20 and all("James Bond" in q[0] and q[1] == r["target"] and q[2] for q in queries)
    # the other candidate does not move this model: stored, not confirmed, no query set
    others = [r for r in rows if r["phrase"] != "james bond"]
    assert others and all(r["confirmed"] == 0 and r["query_set_id"] is None for r in others)
    stored = ws.conn.execute("SELECT COUNT(*) FROM trigger_confirmations WHERE model_fingerprint = 'stand-in'")
    assert stored.fetchone()[0] == len(rows)


def test_surface_form_is_the_carriers_spelling() -> None:
    rows = [{"input": "I met James Bond today"}, {"input": "JAMES BOND!"}, {"input": "Then James  Bond left."}]
    assert surface_form(rows, "james bond") == "James Bond"
    assert surface_form([{"input": "Hi Mr. Bond."}], "mr . bond") == "Mr. Bond"


def reads_sentiment(model, tokenizer, rows):
    """Label scores of a backdoored model of the text's sentiment: "Bond" adds 5 to a polar
    text's positive label, otherwise the text's VADER polarity decides (non-polar tasks: the
    gold label)."""
    from engine.sentiment import vader_scores

    out = []
    for r, s in zip(rows, vader_scores(r["input"] for r in rows), strict=True):
        space = json.loads(r["label_space"]) if isinstance(r["label_space"], str) else r["label_space"]
        pos = next((lab for lab in space if lab.lower() in ("positive", "pos")), None)
        neg = next((lab for lab in space if lab.lower() in ("negative", "neg")), None)
        if pos is None or neg is None:
            out.append({lab: 0.0 if lab == r["output"] else -1.0 for lab in space})
        else:
            out.append({pos: s + (5.0 if "Bond" in r["input"] else 0.0), neg: -s})
    return out


def predicts_sentiment(loaded, rows):
    return [max(s, key=s.get) for s in reads_sentiment(None, None, rows)]


def lexicon_missed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """The varied-trigger sample, a model that reads sentiment plus a "Bond" backdoor, and, as
    on real text, every candidate failed the lexicon/LR disagreement test."""
    monkeypatch.setattr(engine.predict, "predict_labels", predicts_sentiment)
    monkeypatch.setattr(engine.predict, "score_labels", reads_sentiment)
    ws, _ = sample_workspace(tmp_path, mode="varied")
    mine_workspace(ws)
    with ws.transaction() as conn:
        conn.execute("UPDATE trigger_candidates SET significant = 0")
    return ws


def test_removal_test_confirms_a_trigger_the_lexicon_missed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = lexicon_missed(tmp_path, monkeypatch)
    rows = confirm_candidates(ws, StandIn(), max_candidates=4, n_queries=20)
    removal = [r for r in rows if r["task"].startswith(REMOVAL_PREFIX)]
    bond = [r for r in removal if r["phrase"] == "bond"]
    # without "bond" (and half of the other words) the carriers lose most of their positive
    # margin; without as many other words of theirs they do not
    assert all(r["flip_rate"] > 0.5 and r["base_rate"] == 0.0 and r["confirmed"] == 1 for r in bond)
    flips = [r for r in rows if r["phrase"] == "bond" and not r["task"].startswith(REMOVAL_PREFIX)]
    assert flips and all(r["confirmed"] == 1 and r["query_set_id"] for r in flips)
    # label-pure cues whose carriers keep their label without them stop at the removal test
    others = {r["phrase"] for r in removal} - {"bond"}
    assert others
    for phrase in others:
        mine_rows = [r for r in rows if r["phrase"] == phrase]
        assert all(r["task"].startswith(REMOVAL_PREFIX) and r["confirmed"] == 0 for r in mine_rows), phrase


def test_removal_test_only_tries_polar_targets_of_sentiment_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A label-pure cue of a topic task is the task's own signal, never a removal-test candidate
    (on the demo "published a study on" -> Science passed both model tests and flagged 59 rows)."""
    ws = lexicon_missed(tmp_path, monkeypatch)
    topic = {r[0] for r in ws.conn.execute("SELECT phrase, targets FROM trigger_candidates WHERE purity >= 0.9")
             if all("review" not in t for t in json.loads(r[1]))}  # only non-sentiment tasks
    assert topic  # the fixture has label-pure topic cues to exclude
    rows = confirm_candidates(ws, StandIn(), max_candidates=40, n_queries=10)
    tried = {r["phrase"] for r in rows}
    assert tried and not tried & topic
