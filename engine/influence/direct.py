"""In-memory EK-FAC influence, without a workspace: for tests, benchmarks and drill-down."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from engine.influence import passes
from engine.influence.factors import Factors, fit_factors
from engine.influence.losses import Unit
from engine.influence.scoring import Scorer, inverse_eigenvalues, precondition, set_gradients


def influence(
    setup: passes.Setup,
    train: Sequence[Unit],
    queries: Sequence[Unit],
    set_of_query: Sequence[int] | None = None,
    fisher: str = "true",
    damping: float | None = None,
    factor_units: Sequence[Unit] | None = None,
    seed: int = 0,
    self_influence: bool = False,
    factors: Factors | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, Factors]:
    """(scores [n_train, n_sets], self-influence [n_train] or None, factors), rows in ``train`` order.

    ``set_of_query`` maps each query to its set; default: every query is its own set
    (pairwise scores).
    """
    fit_on = list(factor_units if factor_units is not None else train)
    if factors is None:
        factors = fit_factors(setup, fit_on, fisher, seeds=[seed * 1_000_003 + i for i in range(len(fit_on))])
    sets = list(set_of_query) if set_of_query is not None else list(range(len(queries)))
    inv = inverse_eigenvalues(factors, damping)
    pre = precondition(factors, set_gradients(setup, queries, sets, max(sets) + 1), inv)
    scorer = Scorer(setup, factors, inv, pre, self_influence)
    scores = torch.zeros((len(train), max(sets) + 1), dtype=torch.float64)
    selfs = torch.zeros(len(train), dtype=torch.float64) if self_influence else None
    for b in passes.run(setup, train, "true"):
        s, si = scorer.score(b)
        scores[b.indices] = s.cpu()
        if selfs is not None:
            selfs[b.indices] = si.cpu()
    return scores, selfs, factors
