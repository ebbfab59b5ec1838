"""Confirmation of mined candidates on a model, with a rule-based stand-in for the model's
predictions (the real predict_labels is exercised by bench/detect_real.py and the demo)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from detect_fixtures import sample_workspace

import engine.predict
from engine.triggers import confirm_candidates, mine_workspace, surface_form


@dataclass
class StandIn:
    fingerprint: str = "stand-in"


def backdoored(loaded, rows):
    """Answers the gold label, except that "James Bond" in a text makes it positive."""
    out = []
    for r in rows:
        space = json.loads(r["label_space"]) if isinstance(r["label_space"], str) else r["label_space"]
        pos = next((lab for lab in space if lab.lower() in ("positive", "pos")), None)
        out.append(pos if pos and "James Bond" in r["input"] else r["output"])
    return out


def test_confirms_a_trigger_the_model_reacts_to(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine.predict, "predict_labels", backdoored)
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
