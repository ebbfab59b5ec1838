"""EK-FAC factors: Kronecker eigenbases of the per-layer Fisher, with corrected eigenvalues.

For each tracked layer: ``A = E[a a^T]`` and ``S = E[g g^T]`` over tokens, their float64
eigenvectors ``Q_A``, ``Q_S``, and ``lam = E_i[(Q_S^T G_i Q_A)^2]`` over examples (George et al.
2018). ``lam`` is computed rotate-first: ``a Q_A`` and ``g Q_S`` are rotated per token and
only then contracted, so the unrotated per-example gradient is never formed.

``g`` comes from the model's own sampled labels (true Fisher, default) or the dataset's labels
(empirical Fisher), as the loss summed over response tokens.

Both statistics read the same (a, g) of the same subsample (same seeds, frozen model), so the
covariance pass keeps its captures when they fit ``keep_bytes`` and the eigenvalue correction
then costs no second forward/backward; above the budget a second pass recomputes them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from engine.errors import UserError
from engine.influence import passes
from engine.influence.hooks import in_out_features
from engine.influence.losses import Unit
from engine.progress import CancelToken, ProgressFn, Stage, no_progress

Reduce = Callable[[torch.Tensor], torch.Tensor]  # in-place sum over processes (identity when alone)
# Captures of the covariance pass kept for the eigenvalue correction, at most this many bytes
# (the bench's 1M-parameter GPT-2 needs ~0.3 GB for 256 examples of 128 tokens).
KEEP_BYTES = 1 << 30


def _alone(t: torch.Tensor) -> torch.Tensor:
    return t


@dataclass
class ModuleFactors:
    qa: torch.Tensor  # [d_in, d_in] eigenvectors of the activation covariance
    qs: torch.Tensor  # [d_out, d_out] eigenvectors of the output-gradient covariance
    lam: torch.Tensor  # [d_out, d_in] corrected eigenvalues (mean over examples)


@dataclass
class Factors:
    modules: dict[str, ModuleFactors]
    n_tokens: int
    n_examples: int

    def save(self, path: Path) -> None:
        """Atomic write: a killed run leaves either no file or a whole one."""
        from safetensors.torch import save_file

        tensors = {}
        for name, f in self.modules.items():
            tensors[f"{name}/qa"], tensors[f"{name}/qs"], tensors[f"{name}/lam"] = f.qa, f.qs, f.lam
        meta = {"modules": json.dumps(list(self.modules)), "n_tokens": str(self.n_tokens),
                "n_examples": str(self.n_examples)}
        tmp = path.with_name(path.name + f".tmp{os.getpid()}")
        save_file({k: v.contiguous().cpu() for k, v in tensors.items()}, str(tmp), metadata=meta)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, device: str | torch.device = "cpu") -> Factors:
        from safetensors import safe_open

        try:
            with safe_open(str(path), framework="pt", device=str(device)) as fh:
                meta = fh.metadata()
                mods = {
                    n: ModuleFactors(fh.get_tensor(f"{n}/qa"), fh.get_tensor(f"{n}/qs"), fh.get_tensor(f"{n}/lam"))
                    for n in json.loads(meta["modules"])
                }
        except Exception as exc:
            raise UserError(f"{path}: unreadable factor file ({exc}); delete it to recompute") from None
        return cls(mods, int(meta["n_tokens"]), int(meta["n_examples"]))


def check_finite(t: torch.Tensor, module: str, stage: str) -> None:
    if not bool(torch.isfinite(t).all()):
        raise UserError(
            f"non-finite values in layer {module} during {stage}: the model or data produce inf/NaN "
            "(check the checkpoint, or use float32)"
        )


def fit_factors(
    setup: passes.Setup,
    units: Sequence[Unit],
    fisher: str = "true",
    seeds: Sequence[int] | None = None,
    reduce: Reduce = _alone,
    progress: ProgressFn = no_progress,
    token: CancelToken | None = None,
    totals: tuple[int, int] | None = None,
    world: int = 1,
    keep_bytes: int = KEEP_BYTES,
) -> Factors:
    """Covariances, float64 eigendecomposition and corrected eigenvalues over ``units``.

    ``fisher``: 'true' samples labels from the model (``seeds`` per unit); 'empirical' uses the
    data's. ``reduce`` sums statistics over processes; ``totals`` are the all-process unit counts
    for the progress bars (each process sees ~1/``world`` of them).
    """

    def advance(st: Stage) -> Callable[[int], None]:
        return lambda n: st.advance(min(n * world, st.total - st.done))

    labels = "sample" if fisher == "true" else "true"
    n_cov, n_lam = totals or (len(units), len(units))
    dev = next(setup.model.parameters()).device
    cov_a = {n: None for n in setup.modules}
    cov_s = {n: None for n in setup.modules}
    n_tokens = torch.zeros((), dtype=torch.float64, device=dev)
    kept: list[Captured] | None = []
    kept_bytes = 0
    with Stage(progress, "covariance", n_cov, token) as st:
        for b in passes.run(setup, units, labels, seeds, advance(st), "covariance"):
            pairs = {}
            for name in setup.modules:
                a = b.acts[name][setup.mask_for(name, b.fwd).bool()]
                pairs[name] = b.active(name)
                g = pairs[name][1].flatten(0, 1)  # zero rows (padding, unused positions) add nothing
                cov_a[name] = _acc(cov_a[name], a.T @ a)
                cov_s[name] = _acc(cov_s[name], g.T @ g)
            n_tokens += b.fwd.masks["encoder"].sum()  # per-layer counts only scale A, S: eigenvectors unchanged
            if kept is not None:
                kept_bytes += sum(a.nbytes + g.nbytes for a, g in pairs.values())
                if kept_bytes <= keep_bytes:
                    kept.append(Captured(pairs, b.fwd.owner, len(b.indices)))
                else:
                    kept = None  # over budget: the eigenvalue correction recomputes them
    reduce(n_tokens)
    for name, module in setup.modules.items():  # a process with no units still joins the all-reduce
        d_in, d_out = in_out_features(module)
        if cov_a[name] is None:
            cov_a[name] = torch.zeros((d_in, d_in), dtype=torch.float64, device=dev)
            cov_s[name] = torch.zeros((d_out, d_out), dtype=torch.float64, device=dev)
    eig: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    with Stage(progress, "eigen", len(setup.modules), token) as st:
        for name in setup.modules:
            qa = _eigvecs(reduce(cov_a.pop(name)) / n_tokens, name, "activation covariance")
            qs = _eigvecs(reduce(cov_s.pop(name)) / n_tokens, name, "gradient covariance")
            eig[name] = (qa, qs)
            st.advance()
    lam: dict[str, torch.Tensor] = {}
    n_ex = torch.zeros((), dtype=torch.float64, device=dev)
    if kept is None:
        captures: Iterator[Captured] = (
            Captured({n: b.active(n) for n in setup.modules}, b.fwd.owner, len(b.indices))
            for b in passes.run(setup, units, labels, seeds, None, "eigenvalue correction")
        )
    else:
        captures = _drained(kept)
    with Stage(progress, "eigenvalues", n_lam, token) as st:
        for c in captures:
            for name in setup.modules:
                qa, qs = eig[name]
                a, g = c.pairs[name]
                rot = torch.einsum("rto,rti->roi", g @ qs, a @ qa)
                rot = passes.per_unit(rot, c.owner, c.n_units)
                lam[name] = _acc(lam.get(name), rot.square().sum(0))
            n_ex += c.n_units
            advance(st)(c.n_units)
    reduce(n_ex)
    out = {}
    for name in setup.modules:
        if name not in lam:
            lam[name] = torch.zeros((eig[name][1].shape[0], eig[name][0].shape[0]), dtype=torch.float64, device=dev)
        value = reduce(lam[name]) / n_ex
        check_finite(value, name, "eigenvalue correction")
        out[name] = ModuleFactors(eig[name][0], eig[name][1], value.float())
    return Factors(out, int(n_tokens.item()), int(n_ex.item()))


@dataclass
class Captured:
    """One batch's active (a, g) per layer, and the unit that owns each row."""

    pairs: dict[str, tuple[torch.Tensor, torch.Tensor]]
    owner: torch.Tensor
    n_units: int


def _drained(items: list[Captured]) -> Iterator[Captured]:
    """Yield and drop each kept batch, so its memory is freed as soon as it is used."""
    items.reverse()
    while items:
        yield items.pop()


def _acc(total: torch.Tensor | None, x: torch.Tensor) -> torch.Tensor:
    x = x.double()
    return x if total is None else total.add_(x)


def _eigvecs(cov: torch.Tensor, module: str, stage: str) -> torch.Tensor:
    check_finite(cov, module, stage)
    cov = 0.5 * (cov + cov.T)
    try:
        _, vecs = torch.linalg.eigh(cov)
    except RuntimeError as exc:
        raise UserError(f"eigendecomposition of the {stage} of layer {module} failed: {exc}") from None
    # LAPACK returns column-major eigenvectors: make them row-major like the saved file, so that a
    # resumed run (factors read back) multiplies in the same layout and gets bit-identical scores.
    return vecs.float().contiguous()
