"""The screening report: counts, flagged examples with their top tasks, not-scored rows, escaping."""

from __future__ import annotations

import json

from scale_fixtures import designed_workspace

from engine import prefilter, report
from engine.detect import DetectorResult, store
from engine.prefilter import PrefilterSettings
from engine.workspace import utc_now

SETS = ("review_polarity::original", "headline_topic::original")


def add_scan(ws, run_key: str, scores: dict[str, dict[str, float]]) -> None:
    with ws.transaction() as conn:
        conn.execute(
            "INSERT INTO scan_runs (run_key, model_fingerprint, train_sha256, settings, status, created_at, "
            "completed_at) VALUES (?, 'fp', 'tsha', '{\"damping\": 0.1}', 'complete', ?, ?)",
            (run_key, utc_now(), utc_now()),
        )
        for qs, by_uid in scores.items():
            sha = conn.execute("SELECT sha256 FROM query_sets WHERE id = ?", (qs,)).fetchone()[0]
            conn.executemany("INSERT INTO influence VALUES (?, ?, ?, ?, ?)",
                             [(run_key, qs, sha, u, s) for u, s in by_uid.items()])


def test_report_counts_flags_top_tasks_and_unscored(tmp_path) -> None:
    ws, _ = designed_workspace(tmp_path / "w.poison")
    sel = prefilter.select(ws, PrefilterSettings(5))
    pid = prefilter.record(ws, sel)
    prefilter.attach_run(ws, pid, "run")
    cands = sel.uids
    # influence only for the candidates; one movie candidate dominates the movie task
    star = sel.per_set["review_polarity::original"][0]
    add_scan(ws, "run", {
        "review_polarity::original": {u: (50.0 if u == star else float(i % 3)) for i, u in enumerate(cands)},
        "headline_topic::original": {u: float(i % 4) for i, u in enumerate(cands)},
    })
    res = DetectorResult("infl", {u: (9.0 if u == star else 0.1) for u in cands}, {star}, "top outlier")
    store(ws, {"infl": res}, "infl", "run")

    rep = report.build(ws, prefilter_id=pid)
    c = rep["counts"]
    assert c == {"train": 40, "influence_scored": 10, "influence_not_scored": 30, "prefiltered_out": 30,
                 "detector_scored": 10, "detector_not_scored": 30, "flagged": 1}
    assert rep["verdict"] == report.VERDICT_FLAGGED
    (f,) = rep["flagged"]
    assert f["uid"] == star and f["rank"] == 1 and f["task"] == "movie_sentiment"
    assert f["top_tasks"][0]["task"] == "review_polarity"
    assert f["top_tasks"][0]["z"] > 5
    assert rep["not_scored"]["count"] == 30
    assert set(rep["not_scored"]["uids"]) == set(sel.train_uids) - set(cands)
    assert "prefilter" in rep["not_scored"]["reason"]
    assert rep["prefilter"]["n_candidates"] == 10
    assert rep["scan"]["settings"] == {"damping": 0.1}
    assert [q["id"] for q in rep["hashes"]["query_sets"]] == sorted(SETS)


def test_nothing_flagged_with_skipped_rows_is_not_reported_clean(tmp_path) -> None:
    ws, uids = designed_workspace(tmp_path / "w.poison")
    scored = uids["movie"][:5]
    add_scan(ws, "run", {qs: {u: 1.0 for u in scored} for qs in SETS})
    store(ws, {"infl": DetectorResult("infl", dict.fromkeys(scored, 0.5), set(), "rule")}, "infl", "run")
    rep = report.build(ws)
    assert rep["verdict"] == report.VERDICT_PARTIAL
    assert rep["counts"]["influence_not_scored"] == 35 and rep["counts"]["prefiltered_out"] == 0
    assert "not scanned yet" in rep["not_scored"]["reason"]
    md = report.render_markdown(rep)
    assert "35 of 40 training examples have no influence score" in md
    assert "NOT known to be clean" in md


def test_fully_scored_and_nothing_flagged_is_clean(tmp_path) -> None:
    ws, uids = designed_workspace(tmp_path / "w.poison")
    every = uids["movie"] + uids["news"]
    add_scan(ws, "run", {qs: {u: 1.0 for u in every} for qs in SETS})
    store(ws, {"infl": DetectorResult("infl", dict.fromkeys(every, 0.5), set(), "rule")}, "infl", "run")
    rep = report.build(ws)
    assert rep["verdict"] == report.VERDICT_NONE
    assert "Nothing flagged; every training example was scored." in report.render_markdown(rep)


def test_untrusted_text_is_inert_in_markdown_and_json(tmp_path) -> None:
    from scale_fixtures import insert_train, sentiment_row

    ws, _ = designed_workspace(tmp_path / "w.poison")
    evil = "ok | [click](http://x) <script>alert(1)</script> \x1b[31mred\x1b[0m\nnew line `tick` \u202egnp.exe"
    (uid,) = insert_train(ws, [sentiment_row(evil, "positive")], dataset_id=1)
    store(ws, {"d": DetectorResult("d", {uid: 1.0}, {uid}, "rule | with pipe")}, "d", None)
    rep = report.build(ws)
    md = report.render_markdown(rep)
    assert "\x1b" not in md and "\u202e" not in md
    row = next(line for line in md.splitlines() if uid in line)
    assert "\\[click\\]\\(http://x\\)" in row and "\\<script\\>" in row
    assert "new line" in row  # the newline did not end the table row
    # the table row has exactly the 8 unescaped cell separators of its 8 columns (+1 edge)
    unescaped = row.replace("\\|", "").count("|")
    assert unescaped == 9
    md_path, json_path = report.write(rep, tmp_path / "out" / "screen.md")
    raw = json_path.read_bytes()
    assert raw.isascii() and b"\x1b" not in raw
    assert json.loads(raw)["flagged"][0]["input"] == evil  # the data itself is kept exactly
    assert md_path.read_text(encoding="utf-8") == md


def test_report_paths() -> None:
    from pathlib import Path

    assert report.report_paths(Path("a/r.md")) == (Path("a/r.md"), Path("a/r.json"))
    assert report.report_paths(Path("r.json")) == (Path("r.md"), Path("r.json"))
    assert report.report_paths(Path("r")) == (Path("r"), Path("r.json"))
