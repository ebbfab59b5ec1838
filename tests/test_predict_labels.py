"""Rank-classification prediction, clean accuracy, attack success and the retrain check."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from train_fixtures import TINY, toy_rows

from engine.errors import InputError, UserError
from engine.models import load_model
from engine.predict import (
    attack_success_rate,
    clean_accuracy,
    positive_label,
    predict_labels,
    retrain_check,
    score_labels,
)
from engine.prompts import DEFAULT_FORMAT
from engine.train import train_model

TOY = replace(TINY, epochs=6, lr=1e-2)


@pytest.fixture(scope="module")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> object:
    out = tmp_path_factory.mktemp("toy") / "m"
    train_model(toy_rows(128), out, config=TOY)
    return load_model(out, device="cpu")


def test_a_trained_model_predicts_held_out_rows(toy_model: object) -> None:
    held_out = toy_rows(40, offset=1000)
    preds = predict_labels(toy_model, held_out)  # the (loaded, rows) form
    assert preds == [r["output"] for r in held_out]
    assert clean_accuracy(toy_model.model, toy_model.tokenizer, held_out) == 1.0
    flipped = [{**r, "output": "dark" if r["output"] == "bright" else "bright"} for r in held_out]
    assert clean_accuracy(toy_model, flipped) == 0.0


def test_scores_match_a_plain_forward_pass_and_do_not_depend_on_batching(toy_model: object) -> None:
    model, tok = toy_model.model, toy_model.tokenizer
    rows = toy_rows(7, offset=50)
    rows[3] = {**rows[3], "input": rows[3]["input"] + " with a much longer tail of words to pad the others"}
    batched = score_labels(model, tok, rows, batch_size=64)
    single = score_labels(model, tok, rows, batch_size=1)
    for row, b, s in zip(rows, batched, single, strict=True):
        prompt = tok(DEFAULT_FORMAT.prompt(row["definition"], row["input"]))["input_ids"]
        for label in row["label_space"]:
            answer = tok(DEFAULT_FORMAT.answer(label), add_special_tokens=False)["input_ids"]
            ids = torch.tensor([prompt + answer])
            with torch.no_grad():
                logp = torch.log_softmax(model(ids).logits[0], -1)
            expected = sum(float(logp[len(prompt) - 1 + j, t]) for j, t in enumerate(answer))
            assert math.isclose(b[label], expected, abs_tol=1e-4)
            assert math.isclose(s[label], expected, abs_tol=1e-4)
    assert model.training is False


def test_attack_success_rate_counts_target_predictions(toy_model: object) -> None:
    # "dark" rows are the negatives; the attack's target is "bright" (named by the row).
    rows = [{**r, "target": "bright"} for r in toy_rows(20, offset=300) if r["output"] == "dark"]
    assert attack_success_rate(toy_model, rows) == 0.0
    sunny_inputs = [{**r, "input": "sunny" + r["input"][5:]} for r in rows]
    assert attack_success_rate(toy_model, sunny_inputs) == 1.0
    with pytest.raises(UserError, match="gold label other"):
        attack_success_rate(toy_model, [{**rows[0], "output": "bright"}])


def test_positive_label_and_label_space_errors() -> None:
    assert positive_label({"label_space": ["POS", "NEG"]}) == "POS"
    assert positive_label({"label_space": '["negative", "positive"]'}) == "positive"
    with pytest.raises(InputError, match="positive label"):
        positive_label({"label_space": ["Yes", "No"]})
    with pytest.raises(InputError, match="label space"):
        predict_labels(object(), object(), [{"definition": "d", "input": "i", "label_space": None}])


def test_retrain_check_removes_rows_and_reuses_its_model(tmp_path: Path) -> None:
    rows = toy_rows(128)
    eval_rows = toy_rows(20, offset=500)
    attack = [{**r, "target": "bright"} for r in eval_rows if r["output"] == "dark"]
    remove = {r["uid"] for r in rows[:10]}
    report = retrain_check(rows, remove, eval_rows, attack, tmp_path / "rc", config=TOY)
    assert (report.n_train, report.n_removed, report.reused) == (118, 10, False)
    assert report.clean_accuracy == 1.0 and report.attack_success_rate == 0.0
    again = retrain_check(rows, remove, eval_rows, attack, tmp_path / "rc", config=TOY)
    assert again.reused and again.clean_accuracy == report.clean_accuracy
    with pytest.raises(UserError, match="not training rows"):
        retrain_check(rows, {"nope"}, eval_rows, attack, tmp_path / "rc2", config=TOY)
