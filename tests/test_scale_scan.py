"""``poison-tui scan --prefilter/--candidates/--sample`` on the real EK-FAC engine and a tiny GPT-2."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from influence_fixtures import make_gpt2, make_workspace

from engine import prefilter
from engine.influence import scan
from engine.prefilter import PrefilterSettings
from engine.sampling import StageClock
from engine.workspace import Workspace
from poison_tui.cli import main

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("model") / "gpt2")


def scores(ws: Workspace) -> dict[tuple[str, str], float]:
    return {(r[0], r[1]): r[2] for r in ws.conn.execute("SELECT query_set_id, uid, score FROM influence")}


def test_prefiltered_scores_equal_the_unfiltered_ones_on_the_candidates(tmp_path: Path, model: Path) -> None:
    full = make_workspace(tmp_path / "full.poison", n_train=60, variants=("original", "negated"))
    shutil.copytree(tmp_path / "full.poison", tmp_path / "pf.poison")
    pf_ws = Workspace.open(tmp_path / "pf.poison")

    scan(full, model)
    sel = prefilter.select(pf_ws, PrefilterSettings(8))
    assert 8 <= len(sel.uids) < 60
    clock = StageClock()
    scan(pf_ws, model, None, clock, uids=sel.uids)
    assert clock.done("scores") == len(sel.uids)  # only the candidates were computed

    a, b = scores(full), scores(pf_ws)
    assert {uid for _, uid in b} == set(sel.uids)  # the others are absent, not zero
    keys = sorted(b)
    np.testing.assert_allclose([b[k] for k in keys], [a[k] for k in keys], rtol=1e-6, atol=1e-9)
    assert prefilter.unscored_train_uids(pf_ws, next(iter(r[0] for r in pf_ws.conn.execute(
        "SELECT run_key FROM scan_runs")))) == [u for u in sel.train_uids if u not in set(sel.uids)]


def test_scan_cli_prefilter_records_the_selection(tmp_path: Path, model: Path, capsys) -> None:
    make_workspace(tmp_path / "w.poison", n_train=40).close()
    rc = main(["scan", str(tmp_path / "w.poison"), "--model", str(model), "--prefilter", "tfidf",
               "--candidates", "25%"])
    assert rc == 0
    out = capsys.readouterr().out
    ws = Workspace.open(tmp_path / "w.poison")
    rec = prefilter.latest(ws)
    assert rec is not None and rec["params"]["candidates"] == 0.25 and rec["run_key"]
    n = rec["n_candidates"]
    assert f"prefilter: {n} of 40 training examples are candidates ({40 - n} will be marked not scored)" in out
    assert len(prefilter.unscored_train_uids(ws, rec["run_key"])) == 40 - n


def test_candidates_without_prefilter_is_an_error(tmp_path: Path, model: Path, capsys) -> None:
    make_workspace(tmp_path / "w.poison", n_train=10).close()
    rc = main(["scan", str(tmp_path / "w.poison"), "--model", str(model), "--candidates", "5"])
    assert rc == 2
    assert "--candidates needs --prefilter tfidf" in capsys.readouterr().err


def test_trial_sample_then_full_run_reuses_it(tmp_path: Path, model: Path, capsys) -> None:
    make_workspace(tmp_path / "w.poison", n_train=48).close()
    rc = main(["scan", str(tmp_path / "w.poison"), "--model", str(model), "--sample", "12"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "trial: 12 examples sampled across 2 task/label strata; 12 computed now" in out
    assert "time per example:" in out and "ETA for the full set:" in out and "for 36 examples not yet scored" in out
    assert "suspects so far:" in out and "of the 12 sampled" in out
    ws = Workspace.open(tmp_path / "w.poison")
    sampled = {r[0] for r in ws.conn.execute("SELECT DISTINCT uid FROM influence")}
    assert len(sampled) == 12
    labels = [r[0] for r in ws.conn.execute(
        f"SELECT output FROM examples WHERE uid IN ({','.join('?' * 12)})", sorted(sampled))]
    assert set(labels) == {"positive", "negative"}  # stratified: both labels are in the sample
    trial = scores(ws)

    from engine.influence import last_report

    rc = main(["scan", str(tmp_path / "w.poison"), "--model", str(model)])
    assert rc == 0
    assert last_report().n_scored == 36  # the trial's 12 were not computed again
    assert {k: v for k, v in scores(ws).items() if k in trial} == trial


def test_detect_trial_sample_then_full_detect(tmp_path: Path, model: Path, capsys) -> None:
    from scale_fixtures import screen_files

    from engine.influence import last_report

    train, evals = screen_files(tmp_path / "data", n_train=60, n_poison=0)
    ws_path = tmp_path / "w.poison"
    assert main(["ingest", str(train), "--eval", str(evals), "--workspace", str(ws_path)]) == 0
    capsys.readouterr()
    assert main(["detect", str(ws_path), "--model", str(model), "--sample", "10"]) == 0
    out = capsys.readouterr().out
    assert "trial: 10 examples sampled across 2 task/label strata; 10 computed now" in out
    assert "suspects so far:" in out and "flagged by the default detector" in out
    ws = Workspace.open(ws_path)
    run_key = ws.get_meta("detect_run_key")
    assert len(prefilter.scored_train_uids(ws, run_key)) == 10
    # the detectors that read influence rank the sample only; the other 50 are stored as not scored
    n = dict(ws.conn.execute("SELECT scored, COUNT(*) FROM detector_scores WHERE detector = 'self_influence' "
                             "GROUP BY scored").fetchall())
    assert n == {1: 10, 0: 50}

    assert main(["detect", str(ws_path), "--model", str(model)]) == 0
    assert last_report().n_scored == 50  # the trial's 10 are reused
    assert ws.get_meta("detect_run_key") == run_key
    assert len(prefilter.scored_train_uids(ws, run_key)) == 60


def test_detect_scale_flags_need_a_model(tmp_path: Path, capsys) -> None:
    make_workspace(tmp_path / "w.poison", n_train=10).close()
    assert main(["detect", str(tmp_path / "w.poison"), "--sample", "5"]) == 2
    assert "need --model" in capsys.readouterr().err


def test_other_torchrun_ranks_get_the_same_uids(tmp_path: Path, model: Path) -> None:
    from poison_tui.cli import build_parser
    from poison_tui.scale_options import requested_uids

    make_workspace(tmp_path / "w.poison", n_train=40).close()
    argv = ["scan", str(tmp_path / "w.poison"), "--model", str(model), "--prefilter", "tfidf", "--candidates", "8",
            "--sample", "6"]
    ws = Workspace.open(tmp_path / "w.poison")
    wanted = requested_uids(ws, build_parser().parse_args(argv))  # what a rank > 0 would scan
    assert main(argv) == 0
    assert len(wanted) == 6
    assert sorted(wanted) == sorted(r[0] for r in ws.conn.execute("SELECT DISTINCT uid FROM influence"))
    assert ws.conn.execute("SELECT COUNT(*) FROM prefilter_runs").fetchone()[0] == 1  # only rank 0 records
