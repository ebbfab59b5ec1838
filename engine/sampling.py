"""Trial runs: a stratified sample of the training set, and what the full scan will cost.

An analyst scans a few hundred examples first to see the cost per example and whether any
suspects show up, before committing hours of compute. The sample is stratified by task and
label (proportional allocation, at least one per stratum when the sample allows), so a rare
task or label is not missed by chance. The full run later reuses the sample's scores, since
influence is cached per training example.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from engine.errors import UserError
from engine.progress import ProgressEvent, ProgressFn
from engine.workspace import Workspace


@dataclass(frozen=True)
class Row:
    uid: str
    task: str
    label: str | None  # the output for classification tasks; None for free text (task-only stratum)


def training_rows(ws: Workspace) -> list[Row]:
    rows = ws.conn.execute(
        "SELECT uid, task, output, label_space FROM examples WHERE role = 'train' ORDER BY dataset_id, ordinal"
    ).fetchall()
    return [Row(r[0], r[1], r[2].strip() if r[3] is not None else None) for r in rows]


def allocate(sizes: Sequence[int], n: int) -> list[int]:
    """Split ``n`` over strata of the given sizes: proportional (largest remainder), one each at least.

    Every non-empty stratum gets one when ``n`` covers them all (a rare label is the one a
    trial most needs to see); the rest follows the strata's sizes. Never more than a stratum holds.
    """
    total = sum(sizes)
    if n >= total:
        return list(sizes)
    nonempty = sum(1 for s in sizes if s > 0)
    floor_of = [1 if s > 0 and n >= nonempty else 0 for s in sizes]
    quotas = [n * s / total for s in sizes]
    alloc = [min(s, max(lo, math.floor(q))) for s, lo, q in zip(sizes, floor_of, quotas, strict=True)]
    # Hand out or take back one at a time, always where the allocation is furthest from its quota;
    # ties go to the larger stratum, then the earlier one, so the result is deterministic.
    while sum(alloc) < n:
        i = min((i for i in range(len(sizes)) if alloc[i] < sizes[i]),
                key=lambda i: (alloc[i] - quotas[i], -sizes[i], i))
        alloc[i] += 1
    while sum(alloc) > n:
        i = max((i for i in range(len(sizes)) if alloc[i] > floor_of[i]),
                key=lambda i: (alloc[i] - quotas[i], sizes[i], -i))
        alloc[i] -= 1
    return alloc


def stratified_sample(rows: Sequence[Row], n: int, seed: int = 0) -> list[str]:
    """``n`` uids stratified by (task, label), in the rows' order; the same seed gives the same sample."""
    if n < 1:
        raise UserError(f"--sample must be at least 1, not {n}")
    strata: dict[tuple[str, str | None], list[str]] = {}
    for r in rows:
        strata.setdefault((r.task, r.label), []).append(r.uid)
    keys = sorted(strata, key=lambda k: (k[0], "" if k[1] is None else k[1]))
    alloc = allocate([len(strata[k]) for k in keys], n)
    rng = random.Random(seed)
    chosen: set[str] = set()
    for key, m in zip(keys, alloc, strict=True):
        chosen.update(rng.sample(strata[key], m))
    return [r.uid for r in rows if r.uid in chosen]


def strata_counts(rows: Sequence[Row], uids: Sequence[str]) -> dict[str, int]:
    """``'task / label'`` -> how many of ``uids`` fall there (for printing the sample's make-up)."""
    wanted = set(uids)
    out: dict[str, int] = {}
    for r in rows:
        if r.uid in wanted:
            key = r.task if r.label is None else f"{r.task} / {r.label}"
            out[key] = out.get(key, 0) + 1
    return out


@dataclass
class StageClock:
    """A ``ProgressFn`` that remembers, per stage, how long it ran and how many items it did.

    It forwards every event to ``forward`` (the progress bar), so it can wrap any caller's.
    """

    forward: ProgressFn | None = None
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)

    def __call__(self, ev: ProgressEvent) -> None:
        now = time.monotonic()
        st = self.stages.get(ev.stage)
        if st is None:
            st = self.stages[ev.stage] = {"started": ev.started_at, "last": now, "done": 0.0, "total": 0.0}
            self.order.append(ev.stage)
        st["last"] = now
        st["done"] = float(ev.done)
        st["total"] = float(ev.total)
        if self.forward is not None:
            self.forward(ev)

    def elapsed(self, stage: str) -> float:
        st = self.stages.get(stage)
        return 0.0 if st is None else max(0.0, st["last"] - st["started"])

    def done(self, stage: str) -> int:
        st = self.stages.get(stage)
        return 0 if st is None else int(st["done"])


@dataclass(frozen=True)
class CostEstimate:
    n_sample: int  # examples the trial scored (computed, not read from cache)
    sample_s: float  # seconds the trial spent on per-example work
    fixed_s: float  # seconds spent on one-off work (factors), cached for the full run
    n_total: int  # training examples in the workspace
    n_remaining: int  # of those, how many still have no score

    @property
    def per_example_s(self) -> float | None:
        return None if self.n_sample <= 0 else self.sample_s / self.n_sample

    @property
    def eta_s(self) -> float | None:
        """Seconds the full scan still needs: the per-example rate times what is left."""
        per = self.per_example_s
        return None if per is None else per * self.n_remaining


def estimate(clock: StageClock, per_example_stages: Sequence[str], n_computed: int,
             n_total: int, n_remaining: int) -> CostEstimate:
    """Split the trial's time into per-example stages (they scale with the data) and the rest."""
    per = sum(clock.elapsed(s) for s in per_example_stages)
    fixed = sum(clock.elapsed(s) for s in clock.order if s not in per_example_stages)
    return CostEstimate(n_computed, per, fixed, n_total, n_remaining)


def format_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
