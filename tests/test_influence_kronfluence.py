"""Parity with kronfluence 1.0.1: same model, layers, empirical Fisher and heuristic damping."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch
from influence_fixtures import kronfluence_pairwise, make_gpt2, train_rows

from engine.influence.direct import influence
from engine.influence.hooks import select_modules
from engine.influence.losses import make_units
from engine.influence.passes import Setup
from engine.models import load_model

pytestmark = [
    pytest.mark.skipif(importlib.util.find_spec("kronfluence") is None, reason="kronfluence not installed"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),  # kronfluence uses a deprecated GradScaler
]


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.flatten().double(), y.flatten().double()
    x, y = x - x.mean(), y - y.mean()
    return float((x @ y) / (x.norm() * y.norm()))


def test_pairwise_and_per_set_scores_match_kronfluence(tmp_path: Path) -> None:
    model_dir = make_gpt2(tmp_path / "gpt2", n_layer=2, n_embd=16)
    train, queries = train_rows(48, 0), train_rows(8, 9)
    _, theirs = kronfluence_pairwise(model_dir, train, queries, tmp_path / "kf")

    lm = load_model(model_dir)
    setup = Setup(lm.model, "causal", select_modules(lm.model), lm.tokenizer.pad_token_id, 8)
    t_units, _ = make_units(train, lm.tokenizer, "causal", lm.max_length)
    q_units, _ = make_units(queries, lm.tokenizer, "causal", lm.max_length)
    ours, _, factors = influence(setup, t_units, q_units, fisher="empirical")
    assert ours.shape == theirs.shape == (48, 8)
    assert pearson(ours, theirs) >= 0.999
    assert torch.allclose(ours, theirs, rtol=1e-3, atol=1e-4 * theirs.abs().max())  # same scale and sign

    sets = [0, 0, 0, 1, 1, 2, 2, 2]
    agg, _, _ = influence(setup, t_units, q_units, sets, fisher="empirical", factors=factors)
    theirs_agg = torch.stack([theirs[:, [0, 1, 2]].mean(1), theirs[:, [3, 4]].mean(1), theirs[:, [5, 6, 7]].mean(1)], 1)
    assert pearson(agg, theirs_agg) >= 0.999
