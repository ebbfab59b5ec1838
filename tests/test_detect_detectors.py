"""Detectors on real workspaces: the no-model detectors, influence detectors over stand-in
influence rows written to the real tables, the flagged-set rules, storage, and that no
detector reads ground truth."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pytest
from detect_fixtures import sample_workspace, truth_ids, uid_to_source

from engine import detect
from engine.detect import outlier_flags, robust_z, run_detectors, top_suspects
from engine.triggers import mine_workspace

ENGINE = Path(__file__).resolve().parents[1] / "engine"


def test_outlier_rule() -> None:
    scores = {f"u{i}": float(i % 7) for i in range(200)}
    assert outlier_flags(scores) == set()
    scores.update({"a": 100.0, "b": 90.0})
    assert outlier_flags(scores) == {"a", "b"}
    # never more than 5 % of the scored examples
    many = {f"u{i}": (1000.0 + i if i < 50 else float(i % 3)) for i in range(200)}
    assert len(outlier_flags(many)) == 10
    assert robust_z(np.array([1.0, 2.0, 3.0])).tolist() == pytest.approx([-1 / 1.4826, 0.0, 1 / 1.4826])


def test_no_detector_reads_ground_truth(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("detect", "triggers", "sentiment", "transforms", "pipeline"):
        tree = ast.parse((ENGINE / f"{name}.py").read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "engine.evaluate" not in imported, name
        text = (ENGINE / f"{name}.py").read_text()
        assert "load_truth" not in text and "truth_mask" not in text and "truth.jsonl" not in text, name

    import engine.evaluate as ev

    def boom(*a, **k):
        raise AssertionError("a detector read ground truth")

    monkeypatch.setattr(ev, "load_truth", boom)
    monkeypatch.setattr(ev, "truth_mask", boom)
    ws, data = sample_workspace(tmp_path, mode="name")
    (data / "truth.jsonl").unlink()  # nothing to read even by accident
    mine_workspace(ws)
    assert "phrase_purity" in run_detectors(ws)


def test_no_model_detectors_and_storage(tmp_path: Path) -> None:
    ws, data = sample_workspace(tmp_path, mode="name")
    mine_workspace(ws)
    results = run_detectors(ws)
    assert set(results) == {"phrase_purity", "label_sentiment_mismatch"}
    assert ws.get_meta("default_detector") == "phrase_purity"
    runs = {r["detector"]: dict(r) for r in ws.conn.execute("SELECT * FROM detector_runs")}
    assert runs["phrase_purity"]["is_default"] == 1 and runs["phrase_purity"]["n_flagged"] == 45
    assert "modified z-score" in runs["label_sentiment_mismatch"]["rule"]
    n_train = ws.conn.execute("SELECT COUNT(*) FROM examples WHERE role = 'train'").fetchone()[0]
    ranks = [r[0] for r in ws.conn.execute(
        "SELECT rank FROM detector_scores WHERE detector = 'phrase_purity' ORDER BY rank")]
    assert ranks == list(range(1, n_train + 1))
    # the mismatch baseline scores polar tasks only; other rows are stored unscored
    unscored = ws.conn.execute(
        "SELECT COUNT(*) FROM detector_scores WHERE detector = 'label_sentiment_mismatch' AND scored = 0 "
        "AND score IS NULL AND rank IS NULL").fetchone()[0]
    assert unscored == n_train - runs["label_sentiment_mismatch"]["n_scored"] > 0
    src = uid_to_source(ws)
    top = top_suspects(ws, limit=45)
    assert {src[s["uid"]] for s in top} == truth_ids(data)


def _fake_scan(ws, sets: dict[str, dict[str, float]], self_scores: dict[str, float] | None = None,
               fingerprint: str = "fp") -> str:
    """A minimal stand-in for engine.influence.scan: rows in the real influence tables."""
    from engine.queries import register_query_set

    run_key = "stand-in"
    sha = {}
    for qs in sets:
        task, variant = qs.split("::", 1)
        register_query_set(ws, task, variant, [{"source_uid": "q", "definition": "d", "input": qs, "output": "positive",
                                                "label_space": ["positive", "negative"]}])
        sha[qs] = ws.conn.execute("SELECT sha256 FROM query_sets WHERE id = ?", (qs,)).fetchone()[0]
    with ws.transaction() as conn:
        conn.execute("INSERT OR REPLACE INTO scan_runs (run_key, model_fingerprint, train_sha256, settings, status, "
                     "created_at, completed_at) VALUES (?, ?, 'x', '{}', 'complete', '2026', '2026')",
                     (run_key, fingerprint))
        for qs, scores in sets.items():
            conn.executemany("INSERT INTO influence (run_key, query_set_id, query_set_sha256, uid, score) "
                             "VALUES (?, ?, ?, ?, ?)", [(run_key, qs, sha[qs], u, s) for u, s in scores.items()])
        if self_scores:
            conn.executemany("INSERT INTO self_influence (run_key, uid, score) VALUES (?, ?, ?)",
                             [(run_key, u, s) for u, s in self_scores.items()])
    return run_key


def test_influence_detectors_and_ensemble(tmp_path: Path) -> None:
    ws, data = sample_workspace(tmp_path, mode="varied")
    mine_workspace(ws)
    src = uid_to_source(ws)
    truth = truth_ids(data)
    uids = sorted(src)
    rng = np.random.default_rng(0)
    poison = {u for u in uids if src[u] in truth}
    noise = {u: float(rng.normal()) for u in uids}
    # triggered-query influence: poisons high (the stand-in for a working engine)
    trig = {u: noise[u] + (6.0 if u in poison else 0.0) for u in uids}
    # the paper's signal: one example strong on original queries and unchanged by the transform
    critical = uids[7]
    orig = {u: noise[u] * 0.1 + (9.0 if u == critical else 0.0) for u in uids}
    flipped = {u: v + float(rng.normal()) * (0.0 if u == critical else 1.0) for u, v in orig.items()}
    run_key = _fake_scan(ws, {
        "task_book_review_polarity::original": orig,
        "task_book_review_polarity::negation_prefix": flipped,
        "task_book_review_polarity::trigger:bond": trig,
        "task_book_review_polarity::oracle:James Bond": trig,
        "task_book_review_polarity::sentiment_mismatch": trig,
    }, self_scores=noise)
    with ws.transaction() as conn:
        conn.execute("INSERT INTO trigger_confirmations (phrase, kind, model_fingerprint, task, target, n_queries, "
                     "base_rate, triggered_rate, flip_rate, confirmed, created_at) VALUES "
                     "('bond', 'ngram', 'fp', 'task_book_review_polarity', 'positive', 40, 0, 1, 1, 1, 'now')")
    results = run_detectors(ws, run_key)
    assert {"transform_stability", "sentiment_guided", "self_influence", "trigger_influence", "trigger_carrier",
            "oracle_trigger_influence", "ensemble"} <= set(results)
    assert ws.get_meta("default_detector") == "trigger_carrier"
    assert critical in results["transform_stability"].flagged
    assert max(results["transform_stability"].scores, key=results["transform_stability"].scores.get) == critical
    ens = results["ensemble"]
    ranked = sorted(ens.scores, key=lambda u: -ens.scores[u])
    # carriers of the confirmed "bond" first, then the non-carrying phrasings ("Agent 007") by influence
    assert set(ranked[: len(poison)]) == poison
    assert results["trigger_carrier"].flagged < poison
    assert ens.flagged == results["trigger_carrier"].flagged
    # measured on bench/detect_real.py: the ensemble is not better than the carriers, so not default
    assert detect.DEFAULT_ORDER[0] == "trigger_carrier"


def test_detect_command_without_model(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from poison_tui.cli import main

    ws, _ = sample_workspace(tmp_path, mode="prefix")
    assert main(["detect", str(ws.path), "--top", "5"]) == 0
    out = capsys.readouterr().out
    assert "phrase_purity (default): 1500 scored, 45 flagged" in out
    assert "flagged-set rule (phrase_purity): flag the carriers" in out
    assert "trigger candidate 'james bond' (prefix): 45 carriers, purity 1.00" in out
    suspects = [line for line in out.splitlines() if line[:4].strip().isdigit()]
    assert len(suspects) == 5 and all("James Bond" in line and " * " in line for line in suspects)
