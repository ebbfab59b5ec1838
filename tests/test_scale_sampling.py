"""Stratified trial samples and the cost estimate."""

from __future__ import annotations

from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.errors import UserError
from engine.progress import ProgressEvent
from engine.sampling import (
    Row,
    StageClock,
    allocate,
    estimate,
    format_duration,
    stratified_sample,
    training_rows,
)


def rows_of(counts: dict[tuple[str, str | None], int]) -> list[Row]:
    out = []
    for (task, label), n in counts.items():
        out += [Row(f"{task}-{label}-{i}", task, label) for i in range(n)]
    return out


def test_allocation_is_proportional_with_one_per_stratum() -> None:
    assert allocate([90, 9, 1], 10) == [8, 1, 1]
    assert allocate([50, 50], 10) == [5, 5]
    assert allocate([3, 3, 3], 100) == [3, 3, 3]  # never more than a stratum holds
    assert allocate([100, 1, 1, 1], 2) == [2, 0, 0, 0]  # too few for one each: proportional


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 60), min_size=1, max_size=8), st.integers(1, 300))
def test_allocation_properties(sizes: list[int], n: int) -> None:
    alloc = allocate(sizes, n)
    assert sum(alloc) == min(n, sum(sizes))
    assert all(0 <= a <= s for a, s in zip(alloc, sizes, strict=True))
    nonempty = [i for i, s in enumerate(sizes) if s > 0]
    if n >= len(nonempty):
        assert all(alloc[i] >= 1 for i in nonempty)


def test_sample_covers_every_task_and_label_in_proportion() -> None:
    rows = rows_of({("sst", "positive"): 400, ("sst", "negative"): 400, ("hate", "yes"): 150,
                    ("hate", "no"): 40, ("gen", None): 10})
    uids = stratified_sample(rows, 100, seed=3)
    assert len(uids) == len(set(uids)) == 100
    by = Counter(u.rsplit("-", 1)[0] for u in uids)
    assert by == {"sst-positive": 40, "sst-negative": 40, "hate-yes": 15, "hate-no": 4, "gen-None": 1}
    # in the rows' order, and reproducible from the seed
    order = {r.uid: i for i, r in enumerate(rows)}
    assert uids == sorted(uids, key=order.__getitem__)
    assert stratified_sample(rows, 100, seed=3) == uids
    assert stratified_sample(rows, 100, seed=4) != uids


def test_sample_larger_than_data_takes_everything() -> None:
    rows = rows_of({("a", "x"): 3, ("b", "y"): 2})
    assert stratified_sample(rows, 50) == [r.uid for r in rows]


def test_sample_of_zero_is_a_user_error() -> None:
    with pytest.raises(UserError, match="--sample"):
        stratified_sample(rows_of({("a", "x"): 3}), 0)


def test_training_rows_stratify_by_label_only_for_classification(tmp_path) -> None:
    from scale_fixtures import insert_train, sentiment_row

    from engine.workspace import Workspace

    ws = Workspace.create(tmp_path / "w.poison")
    insert_train(ws, [sentiment_row("good", "positive"),
                      {"task": "summarise", "definition": "d", "input": "x", "output": "free text", "label_space": None}])
    rows = training_rows(ws)
    assert [(r.task, r.label) for r in rows] == [("movie_sentiment", "positive"), ("summarise", None)]


def test_stage_clock_and_estimate() -> None:
    seen = []
    clock = StageClock(seen.append)
    clock(ProgressEvent("covariance", 0, 10, started_at=100.0))
    clock(ProgressEvent("scores", 0, 20, started_at=100.0))
    clock(ProgressEvent("scores", 20, 20, started_at=100.0))
    assert len(seen) == 3  # forwarded
    # fix the clock readings so the arithmetic is checked exactly (no timing in tests)
    clock.stages["covariance"]["last"] = 104.0
    clock.stages["scores"]["started"], clock.stages["scores"]["last"] = 104.0, 110.0
    assert clock.done("scores") == 20 and clock.elapsed("scores") == 6.0
    est = estimate(clock, ["scores"], n_computed=20, n_total=1000, n_remaining=980)
    assert est.per_example_s == pytest.approx(0.3)
    assert est.eta_s == pytest.approx(294.0)
    assert est.fixed_s == pytest.approx(4.0)
    assert estimate(StageClock(), ["scores"], 0, 10, 10).eta_s is None


def test_format_duration() -> None:
    assert format_duration(None) == "unknown"
    assert format_duration(0.25) == "250 ms"
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(600) == "10.0 min"
    assert format_duration(3 * 3600) == "3.0 h"
