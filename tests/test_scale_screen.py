"""``poison-tui screen``: exit codes, the report, and the cache (unchanged and appended data).

Real parts throughout: files on disk, ingest, a tiny Hugging Face GPT-2 (saved as
safetensors), the EK-FAC scan and the detectors. Work done is counted from the progress
events of the scan's per-example stage, never by timing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from influence_fixtures import make_gpt2
from scale_fixtures import append_rows, screen_files

from engine.workspace import Workspace
from poison_tui.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("model") / "gpt2")


def screen(train: Path, evals: Path, model: Path, report: Path, *extra: str) -> tuple[int, dict]:
    rc = main(["screen", str(train), "--eval", str(evals), "--model", str(model), "--report", str(report),
               "--quiet", *extra])
    data = json.loads(report.with_suffix(".json").read_text()) if report.with_suffix(".json").exists() else {}
    return rc, data


def influence_rows(ws_path: Path) -> dict[tuple[str, str], float]:
    ws = Workspace.open(ws_path)
    try:
        return {(r[0], r[1]): r[2] for r in ws.conn.execute("SELECT query_set_id, uid, score FROM influence")}
    finally:
        ws.close()


def test_poisoned_set_exits_1_and_reuses_the_cache(tmp_path: Path, model: Path, capsys) -> None:
    train, evals = screen_files(tmp_path / "data", n_train=200, n_poison=10)
    ws_path = tmp_path / "data" / "train.poison"
    rc, rep = screen(train, evals, model, tmp_path / "r1.md")
    assert rc == 1
    assert rep["verdict"] == "suspects_flagged"
    assert rep["counts"]["train"] == 200 and rep["counts"]["influence_not_scored"] == 0
    assert rep["cache"]["examples_scored_now"] == 200
    # the flagged examples are the poisons (checked here with the truth the test planted)
    flagged_text = [f["input"] for f in rep["flagged"]]
    assert len(flagged_text) == rep["counts"]["flagged"] == 10
    assert all(t.endswith("james bond") for t in flagged_text)
    assert all(f["label"] == "positive" and f["source_line"] for f in rep["flagged"])
    assert "**10 suspect(s) flagged**" in (tmp_path / "r1.md").read_text()
    assert rep["hashes"]["model_fingerprint"] and rep["scan"]["run_key"]
    before = influence_rows(ws_path)
    out = capsys.readouterr().out
    assert "10 flagged" in out

    # unchanged data: nothing recomputed, same answer
    rc, rep2 = screen(train, evals, model, tmp_path / "r2.md")
    assert rc == 1 and rep2["counts"] == rep["counts"]
    assert rep2["cache"]["detect_cached"] is True
    assert rep2["cache"]["examples_scored_now"] == 0
    assert "scores" not in rep2["cache"]["stage_items"] and "covariance" not in rep2["cache"]["stage_items"]
    assert influence_rows(ws_path) == before

    # three new rows: only they are scored; every old score is kept as it was
    append_rows(train, 3)
    rc, rep3 = screen(train, evals, model, tmp_path / "r3.md")
    assert rc == 1
    assert rep3["counts"]["train"] == 203 and rep3["counts"]["influence_not_scored"] == 0
    assert rep3["cache"]["examples_scored_now"] == 3
    assert "covariance" not in rep3["cache"]["stage_items"]  # factors reused
    after = influence_rows(ws_path)
    assert {k: after[k] for k in before} == before
    n_sets = len({k[0] for k in after})
    assert len(after) - len(before) == 3 * n_sets


def test_clean_set_exits_0(tmp_path: Path, model: Path) -> None:
    train, evals = screen_files(tmp_path / "data", n_train=60, n_poison=0)
    rc, rep = screen(train, evals, model, tmp_path / "clean.md")
    assert rc == 0
    assert rep["verdict"] == "nothing_flagged" and rep["counts"]["flagged"] == 0
    assert rep["counts"]["influence_scored"] == 60
    assert "Nothing flagged; every training example was scored." in (tmp_path / "clean.md").read_text()


def test_prefiltered_screen_never_reports_skipped_rows_as_clean(tmp_path: Path, model: Path) -> None:
    train, evals = screen_files(tmp_path / "data", n_train=60, n_poison=0)
    rc, rep = screen(train, evals, model, tmp_path / "pf.md", "--prefilter", "tfidf", "--candidates", "10")
    c = rep["counts"]
    assert c["influence_scored"] == rep["prefilter"]["n_candidates"] == rep["cache"]["examples_scored_now"]
    assert c["influence_not_scored"] == c["prefiltered_out"] == 60 - c["influence_scored"] > 0
    assert rc == 0 and rep["verdict"] == "nothing_flagged_partial"
    # ranked against every query set the pipeline registered, transformed variants included
    assert "task_eval::original" in rep["prefilter"]["per_set"]
    assert "task_eval::negation_prefix" in rep["prefilter"]["per_set"]
    md = (tmp_path / "pf.md").read_text()
    assert f"but {c['influence_not_scored']} of 60 training examples have no influence score" in md
    assert "NOT known to be clean" in md
    # in SQLite: influence detectors hold the skipped rows as not scored (NULL score, no rank, never flagged)
    ws = Workspace.open(tmp_path / "data" / "train.poison")
    skipped = set(rep["not_scored"]["uids"])
    for det in ("self_influence", "transform_stability"):
        rows = ws.conn.execute("SELECT uid, score, rank, flagged, scored FROM detector_scores WHERE detector = ?",
                               (det,)).fetchall()
        assert rows, det
        for uid, score, rank, flagged, scored in rows:
            if uid in skipped:
                assert (score, rank, flagged, scored) == (None, None, 0, 0)
            else:
                assert scored == 1 and score is not None
    ws.close()


def test_errors_exit_2_without_a_report(tmp_path: Path, model: Path, capsys) -> None:
    train, evals = screen_files(tmp_path / "data", n_train=20)
    rc, rep = screen(train, evals, tmp_path / "no-such-model", tmp_path / "e1.md")
    assert rc == 2 and rep == {}
    assert "no-such-model" in capsys.readouterr().err
    assert not (tmp_path / "e1.md").exists()

    bad = tmp_path / "bad.jsonl"
    bad.write_text(train.read_text().splitlines()[0] + "\n{not json\n")
    rc, _ = screen(bad, evals, model, tmp_path / "e2.md")
    assert rc == 2
    err = capsys.readouterr().err
    assert "bad.jsonl:2" in err and "Traceback" not in err
    assert not (tmp_path / "e2.md").exists()


def test_help_documents_the_exit_codes(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["screen", "--help"])
    out = capsys.readouterr().out
    assert "0  nothing flagged" in out and "1  suspects flagged" in out and "2  error" in out
