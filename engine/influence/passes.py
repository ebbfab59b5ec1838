"""One pass over units: forward, activation-only backward, captured (a, g) per tracked layer."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from engine.errors import UserError
from engine.influence.hooks import Capture, frozen, fused_activations
from engine.influence.losses import Forward, Unit, forward, unit_batches


@dataclass
class Setup:
    model: Any
    kind: str  # 'causal' | 'seq2seq'
    modules: dict[str, nn.Module]
    pad_id: int
    batch_size: int = 16

    @property
    def head_tracked(self) -> bool:
        head = self.model.get_output_embeddings()
        return any(m is head for m in self.modules.values())

    def mask_for(self, name: str, fwd: Forward) -> torch.Tensor:
        """Token mask of a layer's input rows: decoder layers see decoder tokens, except the
        cross-attention key/value projections, which read the encoder's output."""
        if self.kind != "seq2seq":
            return fwd.masks["encoder"]
        in_decoder = "decoder" in name and not any(s in name for s in ("EncDecAttention.k", "EncDecAttention.v"))
        return fwd.masks["decoder" if in_decoder else "encoder"]


@dataclass
class Batch:
    indices: list[int]  # positions in the unit list of this pass
    fwd: Forward
    acts: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor]

    def active(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(a, g) of one layer restricted to the token positions where some row's gradient is not 0.

        Exact for every gradient statistic (a position with g = 0 adds nothing to ``g a^T``) and
        much cheaper for the last blocks, whose output reaches the loss only at answer tokens.
        """
        a, g = self.acts[name], self.grads[name]
        # a position is zero iff its max and min are: 2.6x faster than (g != 0).any(...) here
        keep = (g.amax(dim=(0, 2)) != 0) | (g.amin(dim=(0, 2)) != 0)
        if bool(keep.all()):
            return a, g
        return a[:, keep], g[:, keep]


def run(
    setup: Setup,
    units: Sequence[Unit],
    labels: str = "true",
    seeds: Sequence[int] | None = None,
    after_batch: Callable[[int], None] | None = None,
    stage: str = "scoring",
) -> Iterator[Batch]:
    """Yield each batch's captures; ``after_batch(n_units)`` is called after it is consumed.

    A non-finite loss stops the pass with an error naming the first layer at fault.
    """
    with frozen(setup.model), fused_activations(setup.model), Capture(setup.modules) as cap:
        for idx in unit_batches(units, setup.batch_size):
            cap.clear()
            batch_units = [units[i] for i in idx]
            gens = None
            if labels == "sample":
                gens = [torch.Generator().manual_seed(int(seeds[i])) for i in idx]  # type: ignore[index]
            with torch.enable_grad():
                fwd = forward(
                    setup.model, setup.kind, batch_units, setup.pad_id, labels, gens, setup.head_tracked
                )
                if not torch.isfinite(fwd.loss):
                    raise UserError(_diagnose(setup, cap, stage))
                fwd.loss.backward()
            missing = [n for n in setup.modules if n not in cap.grads]
            if missing:
                raise UserError(f"no gradient reached layer {missing[0]}: it does not affect the loss")
            yield Batch(idx, fwd, dict(cap.acts), dict(cap.grads))
            if after_batch is not None:
                after_batch(len(idx))


def _diagnose(setup: Setup, cap: Capture, stage: str) -> str:
    for name, module in setup.modules.items():
        if not all(bool(torch.isfinite(p).all()) for p in module.parameters()):
            return f"non-finite values in layer {name} during {stage}: its weights contain inf/NaN"
        if name in cap.acts and not bool(torch.isfinite(cap.acts[name]).all()):
            return f"non-finite values in layer {name} during {stage}: its input is inf/NaN (from an earlier layer)"
    return f"non-finite values in the model's loss during {stage} (outside the tracked layers)"


def per_unit(x: torch.Tensor, owner: torch.Tensor, n_units: int) -> torch.Tensor:
    """Sum row-level tensors [rows, ...] into unit-level ones [units, ...]."""
    if x.shape[0] == n_units:
        return x
    out = x.new_zeros((n_units, *x.shape[1:]))
    return out.index_add_(0, owner.to(x.device), x)
