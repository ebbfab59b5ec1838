"""Metrics on hand-computed cases, truth loading, and the evaluate command end to end."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest
from detect_fixtures import sample_workspace

from engine.errors import InputError, UserError
from engine.evaluate import at_k, auprc, auroc, load_truth, metrics, prf, to_markdown


def test_auroc_counts_pairs() -> None:
    # poison 0.9 beats both cleans, poison 0.7 beats one: 3 of 4 pairs
    assert auroc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(0.75)
    assert auroc([1, 1, 1, 1], [1, 0, 0, 0]) == pytest.approx(0.5)
    assert math.isnan(auroc([1, 2], [0, 0]))


def test_auprc_average_precision() -> None:
    # hits at ranks 1 and 3: (1/1 + 2/3) / 2
    assert auprc([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx((1 + 2 / 3) / 2)
    assert auprc([3, 2, 1], [1, 1, 0]) == pytest.approx(1.0)
    # a tie with clean examples gets no credit for a lucky order
    assert auprc([1, 1, 1, 1], [1, 0, 0, 0]) == pytest.approx(0.25)


def test_flagged_set_and_top_k() -> None:
    assert prf([1, 1, 0, 0], [1, 0, 1, 0]) == pytest.approx((0.5, 0.5, 0.5))
    assert prf([0, 0, 0, 0], [1, 0, 1, 0]) == (0.0, 0.0, 0.0)
    assert at_k([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0], 2) == pytest.approx((0.5, 0.5))
    m = metrics([float(i) for i in range(100)], [i >= 98 for i in range(100)], [i >= 95 for i in range(100)])
    assert m["p@1%"] == 1.0 and m["r@1%"] == 0.5  # k = 1
    assert m["p@2%"] == 1.0 and m["r@2%"] == 1.0  # k = 2
    assert m["p@5%"] == pytest.approx(0.4) and m["precision"] == pytest.approx(0.4) and m["recall"] == 1.0


def test_truth_file_errors_are_located(tmp_path: Path) -> None:
    bad = tmp_path / "truth.jsonl"
    bad.write_text('{"id": "a"}\n{not json}\n')
    with pytest.raises(InputError, match=r"truth.jsonl:2"):
        load_truth(bad)
    bad.write_text('{"id": "a"}\n{"label": 1}\n')
    with pytest.raises(InputError, match="no identifier"):
        load_truth(bad)
    bad.write_text('{"id": "a"}\n{"id": "b", "poison": false}\n')
    assert load_truth(bad) == {"a"}
    with pytest.raises(UserError, match="not found"):
        load_truth(tmp_path / "missing.jsonl")


def test_evaluate_command_writes_json_and_markdown(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from engine.detect import run_detectors
    from engine.triggers import mine_workspace
    from poison_tui.cli import main

    ws, data = sample_workspace(tmp_path, mode="name")
    mine_workspace(ws)
    run_detectors(ws)
    out_json, out_md = tmp_path / "eval.json", tmp_path / "eval.md"
    rc = main(["evaluate", str(ws.path), "--truth", str(data / "truth.jsonl"),
               "--json", str(out_json), "--markdown", str(out_md)])
    assert rc == 0
    table = json.loads(out_json.read_text())
    rows = {r["detector"]: r for r in table["detectors"]}
    assert table["poisons"] == 45 and table["n"] == 1500
    # the planted fixed phrase is found and its flagged set is exactly the poisons
    pp = rows["phrase_purity"]
    assert pp["auprc"] == pytest.approx(1.0) and pp["precision"] == 1.0 and pp["recall"] == 1.0
    # the no-model baseline is there beside it, and is far weaker
    assert rows["label_sentiment_mismatch"]["auprc"] < 0.5
    printed = capsys.readouterr().out
    assert "phrase_purity (default)" in printed and "label_sentiment_mismatch" in printed
    assert out_md.read_text().startswith("| detector |")


def test_evaluate_command_rejects_foreign_truth(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from poison_tui.cli import main

    ws, _ = sample_workspace(tmp_path, mode="name")
    other = tmp_path / "other.jsonl"
    other.write_text('{"id": "nope"}\n')
    assert main(["evaluate", str(ws.path), "--truth", str(other)]) == 2
    assert "matches no training example" in capsys.readouterr().err


def test_verify_removal_trains_each_distinct_removal_set_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The audited model is the poisoned arm (and any arm that removes nothing); a flagged set
    equal to the truth trains once. Training itself is stubbed: this checks the bookkeeping."""
    import engine.models
    import engine.predict
    from engine.detect import run_detectors
    from engine.evaluate import verify_removal
    from engine.triggers import mine_workspace

    ws, data = sample_workspace(tmp_path, mode="name")
    mine_workspace(ws)
    run_detectors(ws)
    trained: list[int] = []

    def fake_retrain(train, remove, evals, attack, out_dir, **kw):
        trained.append(len(remove))
        return engine.predict.RetrainReport(len(train) - len(remove), len(remove), 0.9, 0.1 * len(trained),
                                            Path(out_dir), 1.0, False)

    monkeypatch.setattr(engine.predict, "retrain_check", fake_retrain)
    monkeypatch.setattr(engine.models, "load_model", lambda *a, **k: None)
    monkeypatch.setattr(engine.predict, "clean_accuracy", lambda *a: 0.95)
    monkeypatch.setattr(engine.predict, "attack_success_rate", lambda *a: 0.99)
    truth = load_truth(data / "truth.jsonl")
    table = verify_removal(ws, truth, [], tmp_path / "vr", poisoned_dir=tmp_path / "model")
    assert sorted(trained) == [45, 45]  # tool = truth once, random once; poisoned measured, not trained
    assert table["tool"] == {**table["truth"], "poisons_removed": 45}
    assert table["poisoned"]["asr"] == 0.99 and table["random"]["poisons_removed"] < 45

    trained.clear()
    with ws.transaction() as conn:  # nothing flagged: tool and random arms are the poisoned model
        conn.execute("UPDATE detector_scores SET flagged = 0")
    table = verify_removal(ws, truth, [], tmp_path / "vr2", poisoned_dir=tmp_path / "model")
    assert trained == [45]  # only the truth arm trains
    assert table["tool"]["asr"] == table["random"]["asr"] == table["poisoned"]["asr"] == 0.99


def test_markdown_marks_missing_values() -> None:
    row = {"detector": "x", "default": False, "scored": 0, "flagged": 0, "n": 3, "poisons": 0,
           **{k: float("nan") for k in ("auroc", "auprc")},
           **{k: 0.0 for k in ("precision", "recall", "f1", "p@1%", "r@1%", "p@2%", "r@2%", "p@5%", "r@5%")}}
    assert "| x | 0 | 0 | n/a | n/a | 0.000" in to_markdown([row])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__]))
