"""Query gradients, EK-FAC preconditioning, and the scoring pass over training examples.

Influence of training example i on query set s: ``v_s^T (F + damping)^-1 g_i`` where ``v_s`` is
the mean measurement gradient of the set's queries (exact by linearity: aggregating before
preconditioning equals averaging per-query influences) and ``g_i`` the example's loss gradient.
Positive: the example supports the query set's answers (it lowers their loss).

The preconditioned set vectors ``P_s`` live in the layer's own coordinates, so each training
batch costs one per-example gradient ``sum_t g_t a_t^T`` per layer and one ``[b, D] @ [D, S]``
GEMM for all sets at once; nothing grows with the number of training examples.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.influence import passes
from engine.influence.factors import Factors, Reduce, _alone, check_finite
from engine.influence.losses import Unit
from engine.progress import CancelToken, ProgressFn, Stage, no_progress

HEURISTIC_DAMPING = 0.1  # x mean corrected eigenvalue, per layer (kronfluence's heuristic)


def inverse_eigenvalues(factors: Factors, damping: float | None) -> dict[str, torch.Tensor]:
    """1 / (lam + damping) per layer; damping None = 0.1 x mean(lam) of that layer.

    A layer with zero curvature (its gradient is exactly zero on every fitted example, e.g. a
    decoder's first self-attention query when answers are one token long) has no scale to damp
    against: it gets weight 0 and is listed by ``zero_curvature``.
    """
    out = {}
    for name, f in factors.modules.items():
        lam = f.lam.double()
        d = HEURISTIC_DAMPING * lam.mean() if damping is None else torch.tensor(damping, dtype=torch.float64)
        out[name] = torch.zeros_like(f.lam) if float(lam.max()) == 0.0 else (1.0 / (lam + d)).float()
    return out


def zero_curvature(factors: Factors) -> list[str]:
    return [name for name, f in factors.modules.items() if float(f.lam.max()) == 0.0]


def set_gradients(
    setup: passes.Setup,
    units: Sequence[Unit],
    set_of_unit: Sequence[int],
    n_sets: int,
    reduce: Reduce = _alone,
    progress: ProgressFn = no_progress,
    token: CancelToken | None = None,
    total: int | None = None,
) -> dict[str, torch.Tensor]:
    """Mean measurement gradient per set, ``[n_sets, d_out, d_in]`` per layer.

    A "set" may be a single query (per-query scores) or a whole query set.
    """
    dev = next(setup.model.parameters()).device
    set_idx = torch.as_tensor(list(set_of_unit), dtype=torch.long, device=dev)
    sums: dict[str, torch.Tensor] = {}
    with Stage(progress, "queries", total or len(units), token) as st:
        for b in passes.run(setup, units, "true", after_batch=st.advance, stage="query gradients"):
            owner_sets = set_idx[torch.as_tensor(b.indices, device=dev)][b.fwd.owner.to(dev)]
            for name in setup.modules:
                a, g = b.active(name)
                g_rows = torch.einsum("rto,rti->roi", g, a)
                acc = sums.get(name)
                if acc is None:
                    acc = sums[name] = g_rows.new_zeros((n_sets, *g_rows.shape[1:]), dtype=torch.float64)
                acc.index_add_(0, owner_sets, g_rows.double())
    counts = torch.bincount(set_idx, minlength=n_sets).double()
    reduce(counts)  # units are sharded, so each process counts its own share
    out = {}
    for name in setup.modules:
        if name not in sums:  # this process had no units: contribute zeros
            d_in, d_out = setup_dims(setup, name)
            sums[name] = torch.zeros((n_sets, d_out, d_in), dtype=torch.float64, device=dev)
        g = reduce(sums[name]) / counts.clamp(min=1).view(-1, 1, 1)
        check_finite(g, name, "query gradients")
        out[name] = g
    return out


def setup_dims(setup: passes.Setup, name: str) -> tuple[int, int]:
    from engine.influence.hooks import in_out_features

    return in_out_features(setup.modules[name])


def precondition(factors: Factors, grads: dict[str, torch.Tensor], inv: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``Q_S [(Q_S^T G Q_A) * inv] Q_A^T`` per set, flattened to ``[n_sets, d_out * d_in]`` (float32)."""
    out = {}
    for name, g in grads.items():
        f = factors.modules[name]
        # float32 like the scores themselves: float64 here cost more than the whole query pass
        qa, qs, w = f.qa.to(g.device), f.qs.to(g.device), inv[name].to(g.device)
        g = g.float()
        p = qs @ ((qs.T @ g @ qa) * w) @ qa.T
        check_finite(p, name, "preconditioning")
        out[name] = p.reshape(p.shape[0], -1).float().contiguous()
    return out


@dataclass
class Scorer:
    """Scores training batches against every preconditioned set vector at once."""

    setup: passes.Setup
    factors: Factors
    inv: dict[str, torch.Tensor]
    sets: dict[str, torch.Tensor] | None  # preconditioned [n_sets, D] per layer; None: self-influence only
    self_influence: bool

    def score(self, b: passes.Batch) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """(scores [units, n_sets], self-influence [units]) for one captured batch, float64."""
        n = len(b.indices)
        scores = None
        selfs = None
        for name in self.setup.modules:
            a, g = b.active(name)
            grad = passes.per_unit(torch.einsum("rto,rti->roi", g, a), b.fwd.owner, n)
            if self.sets is not None:
                part = (grad.reshape(n, -1) @ self.sets[name].T).double()
                scores = part if scores is None else scores + part
            if self.self_influence:
                part = self._self(name, a, g, grad, b.fwd.owner, n)
                selfs = part if selfs is None else selfs + part
        if scores is not None:
            check_finite(scores, "(all)", "scoring")
        if selfs is not None:
            check_finite(selfs, "(all)", "self-influence")
        return scores, selfs

    def _self(
        self, name: str, a: torch.Tensor, g: torch.Tensor, grad: torch.Tensor, owner: torch.Tensor, n: int
    ) -> torch.Tensor:
        f = self.factors.modules[name]
        qa, qs = f.qa.to(a.device), f.qs.to(a.device)
        rows, t, d_in = a.shape
        d_out = g.shape[-1]
        # Rotate whichever is cheaper: the tokens first (T(d_in^2 + d_out^2) per row) or the
        # per-example gradient (d_out d_in (d_in + d_out) per unit).
        if rows * t * (d_in * d_in + d_out * d_out) <= n * d_out * d_in * (d_in + d_out):
            rot = passes.per_unit(torch.einsum("rto,rti->roi", g @ qs, a @ qa), owner, n)
        else:
            rot = qs.T @ grad @ qa
        return (rot.square() * self.inv[name].to(a.device)).sum(dim=(1, 2)).double()
