"""engine.influence.scan on a real workspace: cache keys, partial re-runs, subsets, options, errors, CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from influence_fixtures import LABELS, add_query_set, make_gpt2, make_t5, make_workspace

import engine.models
from engine.errors import UserError
from engine.influence import last_report, scan
from engine.influence.hooks import select_modules
from engine.influence.scanner import ScanSettings
from engine.workspace import Workspace
from poison_tui.cli import main

FAST = ScanSettings(chunk_size=8, batch_size=8)


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("m") / "gpt2", n_layer=2, n_embd=8)


def rows(ws: Workspace, run_key: str) -> dict[tuple[str, str], float]:
    return {(r[0], r[1]): r[2] for r in ws.conn.execute(
        "SELECT query_set_id, uid, score FROM influence WHERE run_key = ?", (run_key,))}


def test_scores_every_example_on_every_set_and_records_the_run(tmp_path: Path, model: Path) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=20, variants=("original", "flip"))
    events = []
    key = scan(ws, model, FAST, progress=events.append)
    scores = rows(ws, key)
    assert len(scores) == 20 * 4 and all(math.isfinite(v) for v in scores.values())
    assert len({round(v, 6) for v in scores.values()}) > 40  # real, varied numbers
    run = ws.conn.execute("SELECT * FROM scan_runs WHERE run_key = ?", (key,)).fetchone()
    assert run["status"] == "complete" and Path(run["factors_path"]).is_file()
    assert json.loads(run["settings"])["model_path"] == str(model.resolve())
    assert {e.stage for e in events} >= {"covariance", "eigen", "eigenvalues", "queries", "scores"}
    assert [e.done for e in events if e.stage == "scores"][-1] == 20


def test_identical_rerun_computes_nothing(tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=12)
    key = scan(ws, model, FAST)
    before = rows(ws, key)

    def no_loading(*a: object, **k: object) -> None:
        raise AssertionError("a cache hit must not load the model")

    monkeypatch.setattr(engine.models, "load_model", no_loading)
    events = []
    assert scan(ws, model, FAST, progress=events.append) == key
    assert events == [] and last_report().n_scored == 0
    assert rows(ws, key) == before


def test_new_query_set_reuses_factors_and_scores_only_itself(tmp_path: Path, model: Path) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=12)
    key = scan(ws, model, FAST)
    before = rows(ws, key)
    add_query_set(ws, "sst", "negated", [{"definition": "d", "input": "not good", "output": "negative",
                                          "label_space": json.dumps(LABELS)}])
    assert scan(ws, model, FAST) == key
    report = last_report()
    assert report.factors_cached and report.sets_scored == ["sst::negated"]
    after = rows(ws, key)
    assert {k: v for k, v in after.items() if k[0] != "sst::negated"} == before
    assert sum(k[0] == "sst::negated" for k in after) == 12


def test_changed_query_set_is_rescored(tmp_path: Path, model: Path) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=10)
    key = scan(ws, model, FAST)
    old = rows(ws, key)
    add_query_set(ws, "sst", "original", [{"definition": "d", "input": "awful dull film", "output": "positive",
                                           "label_space": json.dumps(LABELS)}])
    scan(ws, model, FAST)
    assert last_report().sets_scored == ["sst::original"]
    new = rows(ws, key)
    assert all(new[k] != old[k] for k in new if k[0] == "sst::original")
    sha = ws.conn.execute("SELECT sha256 FROM query_sets WHERE id = 'sst::original'").fetchone()[0]
    assert {r[0] for r in ws.conn.execute(
        "SELECT query_set_sha256 FROM influence WHERE query_set_id = 'sst::original'")} == {sha}


def test_uid_subset_leaves_the_rest_unscored_and_agrees_with_the_full_run(tmp_path: Path, model: Path) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=16)
    subset = ["t00003", "t00007", "t00011"]
    key = scan(ws, model, FAST, uids=subset)
    part = rows(ws, key)
    assert {uid for _, uid in part} == set(subset)  # absent rows = not scored, never 0
    scan(ws, model, FAST)
    full = rows(ws, key)
    assert len(full) == 16 * 2
    assert all(full[k] == part[k] for k in part)
    with pytest.raises(UserError, match="not training examples"):
        scan(ws, model, FAST, uids=["nope"])


def test_grad_norm_divides_by_the_root_of_self_influence(tmp_path: Path, model: Path) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=10)
    raw_key = scan(ws, model, ScanSettings(chunk_size=8, self_influence=True))
    norm_key = scan(ws, model, ScanSettings(chunk_size=8, normalize="grad_norm"))
    assert norm_key != raw_key
    selfs = dict(ws.conn.execute("SELECT uid, score FROM self_influence WHERE run_key = ?", (raw_key,)).fetchall())
    assert len(selfs) == 10 and all(v > 0 for v in selfs.values())
    raw, norm = rows(ws, raw_key), rows(ws, norm_key)
    for (qs, uid), v in raw.items():
        assert norm[(qs, uid)] == pytest.approx(v / math.sqrt(selfs[uid]), rel=1e-5)


def test_label_logprob_measurement(tmp_path: Path, model: Path) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=10)
    loss_key = scan(ws, model, FAST)
    lp_key = scan(ws, model, ScanSettings(chunk_size=8, measurement="label_logprob"))
    assert lp_key != loss_key and last_report().n_without_label_space == 0
    loss, lp = rows(ws, loss_key), rows(ws, lp_key)
    assert set(loss) == set(lp) and all(math.isfinite(v) for v in lp.values())
    assert any(abs(lp[k] - loss[k]) > 1e-3 * abs(loss[k]) for k in loss)


def test_seq2seq_model_scans(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=8, tasks=("sst",))
    key = scan(ws, make_t5(tmp_path / "t5"), ScanSettings(chunk_size=8, self_influence=True))
    scores = rows(ws, key)
    assert len(scores) == 8 and all(math.isfinite(v) for v in scores.values())
    assert len(set(scores.values())) == 8


def test_module_selection(model: Path) -> None:
    m = engine.models.load_model(model).model
    assert "lm_head" not in select_modules(m) and len(select_modules(m)) == 8
    assert list(select_modules(m, last_blocks=1)) == [f"transformer.h.1.{n}" for n in
                                                     ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]
    assert list(select_modules(m, ["*.mlp.c_fc"])) == ["transformer.h.0.mlp.c_fc", "transformer.h.1.mlp.c_fc"]
    assert list(select_modules(m, ["lm_head"])) == ["lm_head"]
    with pytest.raises(UserError, match="matched no Linear/Conv1D layer"):
        select_modules(m, ["nothing_like_this"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ScanSettings(fisher="exact"), "--fisher must be one of"),
        (ScanSettings(damping=-1.0), "--damping must be a positive number"),
        (ScanSettings(measurement="margin"), "--measurement must be one of"),
        (ScanSettings(query_sets="imdb::*"), r"no query set matches 'imdb::\*'"),
    ],
)
def test_bad_settings(tmp_path: Path, model: Path, settings: ScanSettings, message: str) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=4, tasks=("sst",))
    with pytest.raises(UserError, match=message):
        scan(ws, model, settings)


def test_empty_query_set_is_named(tmp_path: Path, model: Path) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=4, tasks=("sst",))
    add_query_set(ws, "imdb", "original", [])
    with pytest.raises(UserError, match=r"query set imdb::original is empty"):
        scan(ws, model, FAST)


def test_cli_scan_summary_cache_hit_truncation_and_errors(
    tmp_path: Path, model: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ws = make_workspace(tmp_path / "ws", n_train=6, tasks=("sst",))
    ws.close()
    assert main(["scan", str(tmp_path / "ws"), "--model", str(model), "--max-length", "12",
                 "--fisher", "empirical"]) == 0
    out = capsys.readouterr().out
    assert "scored 6 examples against 1 query set(s) in one pass" in out
    assert "6 example(s) longer than the model's context" in out
    assert main(["scan", str(tmp_path / "ws"), "--model", str(model), "--max-length", "12",
                 "--fisher", "empirical"]) == 0
    assert "cache hit" in capsys.readouterr().out
    assert main(["scan", str(tmp_path / "ws"), "--model", str(tmp_path / "missing")]) == 2
    assert "model not found" in capsys.readouterr().err
    assert main(["scan", str(tmp_path / "ws"), "--model", str(model), "--damping", "lots"]) == 2
    assert "--damping must be a number or 'auto'" in capsys.readouterr().err


def test_drilldown_per_query_scores_average_to_the_set_score(tmp_path: Path, model: Path) -> None:
    from engine.influence import top_queries

    ws = make_workspace(tmp_path / "ws", n_train=6, n_queries=3)
    for normalize in ("none", "grad_norm"):
        key = scan(ws, model, ScanSettings(chunk_size=8, normalize=normalize))
        per_query = top_queries(ws, key, "t00002", k=100)
        assert len(per_query) == 6
        assert [abs(q["score"]) for q in per_query] == sorted((abs(q["score"]) for q in per_query), reverse=True)
        for set_id in ("sst::original", "imdb::original"):
            mean = sum(q["score"] for q in per_query if q["query_set_id"] == set_id) / 3
            stored = rows(ws, key)[(set_id, "t00002")]
            assert mean == pytest.approx(stored, rel=1e-4)
    with pytest.raises(UserError, match="not a training example"):
        top_queries(ws, key, "nope")


def test_cancel_stops_at_a_chunk_boundary_and_resume_completes(tmp_path: Path, model: Path) -> None:
    from engine.errors import Cancelled
    from engine.progress import CancelToken

    ws = make_workspace(tmp_path / "ws", n_train=16)
    token = CancelToken()

    def cancel_after_first_chunk(ev) -> None:
        if ev.stage == "scores" and ev.done >= 8:
            token.cancel()

    with pytest.raises(Cancelled):
        scan(ws, model, FAST, progress=cancel_after_first_chunk, token=token)
    assert ws.conn.execute("SELECT status FROM scan_runs").fetchone()[0] == "cancelled"
    assert ws.conn.execute("SELECT COUNT(DISTINCT uid) FROM influence").fetchone()[0] == 8
    key = scan(ws, model, FAST)
    assert last_report().n_scored == 8 and len(rows(ws, key)) == 16 * 2


def test_chat_template_wraps_the_prompt(tmp_path: Path, model: Path) -> None:
    from engine.influence.losses import make_units

    lm = engine.models.load_model(model)
    row = {"definition": "d", "input": "good film", "output": "positive", "label_space": None}
    with pytest.raises(UserError, match="no chat template"):
        make_units([row], lm.tokenizer, "causal", 64, chat=True)
    lm.tokenizer.chat_template = "{% for m in messages %}Is it {{ m['content'] }}{% endfor %} ?"
    (plain,), _ = make_units([row], lm.tokenizer, "causal", 64)
    (chat,), _ = make_units([row], lm.tokenizer, "causal", 64, chat=True)
    ids = chat.rows[0].input_ids
    assert lm.tokenizer.convert_ids_to_tokens(ids[:2]) == ["Is", "it"]
    assert ids[2 : 2 + len(plain.rows[0].input_ids) - 1] == plain.rows[0].input_ids[:-1]
    assert chat.rows[0].labels[-1] == plain.rows[0].labels[-1]  # the answer is still the only target
