"""Compressed per-example gradient cache: score new query sets with no new pass over the training data.

Each training example's per-layer gradient is stored projected onto the top-``k`` eigenvectors
of the layer's two Kronecker factors, ``C_i = Q_S,k^T G_i Q_A,k`` (k x k, float16), computed
rotate-first from the captured activations and output gradients. A query set is then scored
as ``<C_i, [(Q_S^T V Q_A) / (lam + damping)]_k>``: exact EK-FAC restricted to that block (the
eigenbasis captures more of the gradient than random projections at equal storage; see
``docs``/the research note). ``k`` equal to the layer widths reproduces the exact scores.

Not used by ``scan`` (its scores are exact); this is the building block for interactive
"what if I add this query set" scoring, with its fidelity measured in ``bench/ekfac.py``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from engine.influence import passes
from engine.influence.factors import Factors
from engine.influence.losses import Unit


@dataclass
class GradCache:
    blocks: dict[str, tuple[int, int]]  # layer -> (k_out, k_in)
    data: torch.Tensor  # [n_examples, sum k_out * k_in] float16, rows in unit order

    @property
    def bytes_per_example(self) -> int:
        return self.data.shape[1] * self.data.element_size()


def _top(factors: Factors, name: str, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    f = factors.modules[name]  # eigh orders eigenvalues ascending: the top ones are the last columns
    return f.qs[:, -min(k, f.qs.shape[1]) :], f.qa[:, -min(k, f.qa.shape[1]) :]


def build(setup: passes.Setup, factors: Factors, units: Sequence[Unit], k: int) -> GradCache:
    """One pass over ``units`` (forward + activation backward) writing their projected gradients."""
    blocks = {n: tuple(q.shape[1] for q in _top(factors, n, k)) for n in setup.modules}
    width = sum(a * b for a, b in blocks.values())
    data = torch.zeros((len(units), width), dtype=torch.float16)
    for b in passes.run(setup, units, "true", stage="gradient cache"):
        parts = []
        for name in setup.modules:
            qs, qa = (q.to(b.acts[name].device) for q in _top(factors, name, k))
            a, g = b.active(name)
            c = torch.einsum("rto,rti->roi", g @ qs, a @ qa)
            parts.append(passes.per_unit(c, b.fwd.owner, len(b.indices)).flatten(1))
        data[b.indices] = torch.cat(parts, dim=1).cpu().half()
    return GradCache(blocks, data)


def score(cache: GradCache, factors: Factors, inv: dict[str, torch.Tensor], set_grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Scores ``[n_examples, n_sets]`` for set gradients ``[n_sets, d_out, d_in]`` per layer (float64)."""
    vecs = []
    for name, (ko, ki) in cache.blocks.items():
        f = factors.modules[name]
        g = set_grads[name].double()
        rotated = (f.qs.T.double() @ g @ f.qa.double()) * inv[name].double()
        vecs.append(rotated[:, -ko:, -ki:].flatten(1))  # the same top block the cache holds
    return cache.data.double() @ torch.cat(vecs, dim=1).T
