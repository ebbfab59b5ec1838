"""Query transforms: what each does, seeded registration as query sets, recorded statistics."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from detect_fixtures import sample_workspace

from engine.transforms import (
    antonym_flip,
    flip_label,
    grammatical_negation,
    make_transformed_sets,
    negation_prefix,
    question_negation,
    transform_rows,
)


def test_each_transform() -> None:
    rng = np.random.default_rng(0)
    assert antonym_flip("Good acting, BAD plot.", rng) == "Bad acting, GOOD plot."
    assert antonym_flip(antonym_flip("I love this great film", rng), rng) == "I love this great film"
    assert grammatical_negation("The plot was thin.", rng) == "The plot was not thin."
    assert grammatical_negation("Terrific fun.", rng) == "It is not the case that terrific fun."
    assert question_negation("Nice.", rng) == "What would be the opposite sentiment of: 'Nice.'?"
    assert negation_prefix("Nice.", rng).endswith(" Nice.") and len(negation_prefix("x", rng)) > 5
    assert flip_label("POS", ["POS", "NEG"]) == "NEG" and flip_label("No", ["Yes", "No"]) == "Yes"
    assert flip_label("joy", ["anger", "fear", "joy"]) in {"anger", "fear"}


def test_transform_rows_are_seeded() -> None:
    rows = [{"source_uid": str(i), "definition": "d", "input": f"text {i}", "output": "POS",
             "label_space": ["POS", "NEG"]} for i in range(20)]
    a, b = transform_rows(rows, "negation_prefix", 3), transform_rows(rows, "negation_prefix", 3)
    assert [r["input"] for r in a] == [r["input"] for r in b]
    flipped = transform_rows(rows, "label_flip", 0)
    assert all(r["output"] == "NEG" and r["input"] == s["input"] for r, s in zip(flipped, rows, strict=True))


def test_registered_with_statistics_and_useless_transform_reported(tmp_path: Path) -> None:
    ws, _ = sample_workspace(tmp_path, mode="name")
    report = make_transformed_sets(ws, ["negation_prefix", "antonym_flip", "label_flip"], seed=0)
    by = {(r["task"], r["transform"]): r for r in report}
    tasks = {r["task"] for r in report}
    assert len(report) == 3 * len(tasks)
    for task in tasks:
        assert by[(task, "negation_prefix")]["n_text_changed"] == by[(task, "negation_prefix")]["n_queries"]
    for task in ("task_book_review_polarity", "task_forum_toxicity_detection"):
        assert by[(task, "label_flip")]["n_label_changed"] == by[(task, "label_flip")]["n_queries"]
    # a four-way topic task has no opposite label: the flip changes nothing, so it is reported
    # as unusable and not registered
    topic = by[("task_headline_topic_classification", "label_flip")]
    assert topic["n_label_changed"] == 0 and not topic["registered"] and topic["usable"] == 0
    assert topic["note"] == "changed no query: not used"
    sets = {r[0] for r in ws.conn.execute("SELECT id FROM query_sets")}
    assert all(f"{t}::negation_prefix" in sets for t in tasks)
    assert "task_headline_topic_classification::label_flip" not in sets
    stored = ws.conn.execute("SELECT COUNT(*) FROM transform_stats").fetchone()[0]
    assert stored == len(report)
