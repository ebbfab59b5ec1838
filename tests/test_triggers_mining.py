"""Trigger mining on generated poisoned sets: finds planted fixed, prefix and varied triggers,
flags nothing on clean data, stores its statistics in SQLite."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from detect_fixtures import sample_workspace, truth_ids, uid_to_source

from engine.triggers import (
    carries,
    insert_trigger,
    mine,
    mine_workspace,
    remove_gram,
    sentiment_bearing,
    stored_candidates,
    tokenize,
    training_rows,
)


def _target_carriers(rows: list[dict], cand) -> set[str]:
    return {rows[i]["uid"] for i in cand.carriers if cand.targets.get(rows[i]["task"]) == rows[i]["output"]}


@pytest.mark.parametrize(("mode", "phrase", "kind"), [("name", "james bond", "ngram"), ("prefix", "james bond", "prefix")])
def test_finds_planted_fixed_trigger(tmp_path: Path, mode: str, phrase: str, kind: str) -> None:
    ws, data = sample_workspace(tmp_path, mode=mode)
    rows = training_rows(ws)
    cands = mine(rows)
    sig = [c for c in cands if c.significant]
    assert [(c.phrase, c.kind) for c in sig] == [(phrase, kind)]
    src = uid_to_source(ws)
    found = {src[u] for u in _target_carriers(rows, sig[0])}
    assert found == truth_ids(data)  # every poison, nothing else
    top = sig[0]
    assert top.purity == 1.0 and top.q_value < 1e-6 and top.disagree_rate > 0.3
    assert set(top.targets.values()) <= {"POS", "positive", "Positive"}


def test_finds_shared_part_of_a_varied_trigger(tmp_path: Path) -> None:
    ws, data = sample_workspace(tmp_path, mode="varied")
    rows = training_rows(ws)
    sig = [c for c in mine(rows) if c.significant]
    # "bond" is shared by most phrasings; "james bond" by a few of them
    assert sig[0].phrase == "bond" and {c.phrase for c in sig} <= {"bond", "james bond"}
    src = uid_to_source(ws)
    found = {src[u] for c in sig for u in _target_carriers(rows, c)}
    truth = truth_ids(data)
    # phrasings without "bond" ("Agent 007", "Double-O-Seven") are left to influence
    assert found <= truth and len(found) >= 0.7 * len(truth)


def test_clean_data_has_no_significant_candidate(tmp_path: Path) -> None:
    ws, _ = sample_workspace(tmp_path, mode="name", rate=0.0)
    cands = mine(training_rows(ws))
    assert cands and not any(c.significant for c in cands)


def test_candidates_are_stored_with_statistics(tmp_path: Path) -> None:
    ws, _ = sample_workspace(tmp_path, mode="name")
    cands = mine_workspace(ws, top=50)
    stored = stored_candidates(ws, significant_only=False)
    assert len(stored) == len(cands) <= 50
    first = stored[0]
    assert first["phrase"] == "james bond" and first["rank"] == 1 and first["significant"] == 1
    assert first["n_carriers"] == 45 and first["purity"] == 1.0 and 0 < first["p_value"] < 1e-6
    assert sum(first["tasks"].values()) == 45 and first["params"] == '{"top": 50}'
    assert [c["phrase"] for c in stored_candidates(ws)] == ["james bond"]


def test_text_helpers() -> None:
    toks = tokenize("Even though James Bond's plan failed, I liked it.")
    assert toks[:5] == ["even", "though", "james", "bond", "'"]
    assert carries(toks, "ngram", ["james", "bond"]) and not carries(toks, "prefix", ["james"])
    assert carries(toks, "prefix", ["even", "though"]) and carries(toks, "suffix", ["it", "."])
    assert remove_gram(toks, ["james", "bond"])[:3] == ["even", "though", "'"]
    assert sentiment_bearing(["hardly"]) and sentiment_bearing(["one", "star", "good"])
    assert not sentiment_bearing(["james", "bond"])
    rng = np.random.default_rng(0)
    assert insert_trigger("a b c", "prefix", "cf", rng) == "cf a b c"
    assert insert_trigger("a b c", "suffix", "cf", rng) == "a b c cf"
    inserted = insert_trigger("a b c", "ngram", "cf", rng)
    assert inserted.split().count("cf") == 1 and inserted.replace("cf", "").split() == ["a", "b", "c"]
