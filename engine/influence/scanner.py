"""``scan``: EK-FAC influence of every training example on every query set, cached in the workspace.

Cache keys are content hashes: ``factor_key`` = model weights + training data + factor
settings (the factor file ``factors/<factor_key>.safetensors``); ``run_key`` = factor_key +
scoring settings. Scores live in ``influence``/``self_influence`` keyed by run_key, and each
influence row records the query set's sha256, so:

* a re-run with identical inputs finds every row present and computes nothing;
* a new or changed query set reuses the factors and scores only the sets that are missing;
* rows are committed per chunk of training examples, in a fixed order, so the rows already
  present are the resume point: a run killed at any moment continues where it stopped and
  ends with the same numbers as an uninterrupted run.

Absent rows mean "not scored" (``uids=`` restricts a scan to candidates); a score is never
written as 0 for an example that was not scored.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import math
import random
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from engine.errors import Cancelled, UserError
from engine.hashing import json_sha256
from engine.influence import distributed, passes
from engine.influence.factors import Factors, fit_factors
from engine.influence.hooks import select_modules
from engine.influence.losses import make_units
from engine.influence.scoring import Scorer, inverse_eigenvalues, precondition, set_gradients, zero_curvature
from engine.progress import CancelToken, ProgressFn, Stage, no_progress
from engine.prompts import DEFAULT_TEMPLATE, PromptFormat
from engine.workspace import Workspace, utc_now

FISHERS = ("true", "empirical")
MEASUREMENTS = ("loss", "label_logprob")
NORMALIZATIONS = ("none", "grad_norm")


@dataclass(frozen=True)
class ScanSettings:
    modules: tuple[str, ...] | None = None  # glob patterns; None: every Linear/Conv1D but the head
    last_blocks: int | None = None  # only the last K transformer blocks
    damping: float | None = None  # None: 0.1 x mean corrected eigenvalue, per layer
    fisher: str = "true"  # 'true' (labels sampled from the model) | 'empirical'
    measurement: str = "loss"  # 'loss' | 'label_logprob' (gold label among the task's labels)
    normalize: str = "none"  # 'none' | 'grad_norm' (divide by sqrt(self-influence))
    self_influence: bool = False  # also write self_influence (always on with grad_norm)
    factor_examples: int | None = None  # covariance/eigenvalue subsample; None: max(256, 10 %)
    query_sets: str = "*"  # glob over query set ids; not part of the cache key
    template: str = DEFAULT_TEMPLATE
    chat_template: bool = False  # wrap the prompt in the tokenizer's chat template (one user turn)
    max_length: int | None = None  # None: the model's context
    batch_size: int = 16
    chunk_size: int = 256  # training examples per committed chunk (the resume granularity)
    seed: int = 0
    device: str | None = None  # None: CUDA when present (one GPU per torchrun rank), else CPU
    dtype: str | None = None  # 'float32' | 'bfloat16'; None: float32 on CPU, bfloat16 on CUDA

    def validate(self) -> None:
        for value, allowed, flag in (
            (self.fisher, FISHERS, "--fisher"), (self.measurement, MEASUREMENTS, "--measurement"),
            (self.normalize, NORMALIZATIONS, "--normalize"),
        ):
            if value not in allowed:
                raise UserError(f"{flag} must be one of {', '.join(allowed)} (got {value!r})")
        if self.damping is not None and not (self.damping > 0 and math.isfinite(self.damping)):
            raise UserError(f"--damping must be a positive number (got {self.damping})")
        if self.batch_size < 1 or self.chunk_size < 1:
            raise UserError("batch and chunk sizes must be at least 1")
        if self.factor_examples is not None and self.factor_examples < 1:
            raise UserError("--factor-examples must be at least 1")
        if self.dtype not in (None, "float32", "bfloat16"):
            raise UserError(f"--dtype must be float32 or bfloat16 (got {self.dtype!r})")

    @property
    def wants_self(self) -> bool:
        return self.self_influence or self.normalize == "grad_norm"


@dataclass
class ScanReport:
    """What the last ``scan`` call did, for the CLI summary."""

    run_key: str = ""
    n_train: int = 0
    n_scored: int = 0  # training examples scored by this call (0 on a cache hit)
    sets_scored: list[str] = field(default_factory=list)
    sets_cached: list[str] = field(default_factory=list)
    factors_cached: bool = False
    n_truncated: int = 0
    n_without_label_space: int = 0
    factors_path: str = ""
    zero_curvature_layers: list[str] = field(default_factory=list)  # gradient always 0 there: not used


LAST_REPORT = ScanReport()


def scan(
    ws: Workspace,
    model_path: str | Path,
    settings: ScanSettings | None = None,
    progress: ProgressFn = no_progress,
    token: CancelToken | None = None,
    uids: Sequence[str] | None = None,
) -> str:
    """Score the workspace's training examples against its query sets; returns the run key.

    Run under torchrun to shard the work; only rank 0 writes (the others return the same key).
    """
    global LAST_REPORT
    settings = settings or ScanSettings()
    settings.validate()
    from engine.models import fingerprint_of

    dist = distributed.from_env()
    uids = dist.broadcast(list(uids) if uids is not None else None)  # rank 0's selection (prefilter, sample)
    model_path = Path(model_path)
    fingerprint = fingerprint_of(model_path)
    train = training_rows(ws)
    todo_uids = _requested(train, uids)
    sets = _query_sets(ws, settings.query_sets)
    train_sha = json_sha256([[r["uid"], r["definition"], r["input"], r["output"], r["label_space"]] for r in train])
    n_factor = min(len(train), settings.factor_examples or max(256, math.ceil(0.1 * len(train))))
    device = settings.device or dist.device or ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = settings.dtype or (
        "bfloat16" if device.startswith("cuda") and torch.cuda.is_bf16_supported() else "float32"
    )
    settings = replace(settings, device=device, dtype=dtype)  # resolved: the numbers depend on dtype
    # The keys cover the model and the settings, not the training set (docs/architecture.md,
    # caching rules): factors are fitted once on a subsample of the data as it was then, and a
    # grown or edited training set only adds rows to score under the same run key (ingest drops
    # the rows whose content changed). self_influence is an extra output, not a setting.
    factor_key = json_sha256({
        "model": fingerprint, "modules": settings.modules, "last_blocks": settings.last_blocks,
        "fisher": settings.fisher, "factor_examples": settings.factor_examples, "seed": settings.seed,
        "template": settings.template, "chat": settings.chat_template, "max_length": settings.max_length,
        "dtype": settings.dtype,
    })
    run_key = json_sha256({"factors": factor_key, "damping": settings.damping, "measurement": settings.measurement,
                           "normalize": settings.normalize})[:32]
    factors_path = ws.subdir("factors") / f"{factor_key[:32]}.safetensors"
    report = ScanReport(run_key, len(train), factors_path=str(factors_path))
    LAST_REPORT = report

    if dist.is_main:
        _drop_stale(ws, run_key, sets)
    dist.barrier()
    todo_sets, todo = _missing(ws, run_key, sets, todo_uids, settings.wants_self)
    report.sets_cached = [s["id"] for s in sets if s["id"] not in {t["id"] for t in todo_sets}]
    if not todo:
        if dist.is_main:
            _record_run(ws, run_key, fingerprint, train_sha, settings, model_path, factors_path, "complete")
        report.factors_cached = factors_path.is_file()
        return run_key

    if dist.is_main:
        _record_run(ws, run_key, fingerprint, train_sha, settings, model_path, factors_path, "running")
    try:
        _compute(ws, dist, model_path, settings, train, todo, todo_sets, n_factor, factors_path, run_key,
                 progress if dist.is_main else no_progress, token, report)
    except Cancelled:
        if dist.is_main:
            _set_status(ws, run_key, "cancelled")
        raise
    except BaseException:
        if dist.is_main:
            _set_status(ws, run_key, "failed")
        raise
    if dist.is_main:
        _set_status(ws, run_key, "complete")
    dist.barrier()
    return run_key


def _compute(
    ws: Workspace, dist: distributed.Dist, model_path: Path, settings: ScanSettings, train: list[dict],
    todo: list[str], todo_sets: list[dict], n_factor: int, factors_path: Path, run_key: str,
    progress: ProgressFn, token: CancelToken | None, report: ScanReport,
) -> None:
    from engine.models import load_model

    with Stage(progress, "load model", 1, token) as st:
        loaded = load_model(model_path, device=settings.device, dtype=getattr(torch, settings.dtype or "float32"))
        st.advance()
    modules = select_modules(loaded.model, settings.modules, settings.last_blocks)
    setup = passes.Setup(loaded.model, loaded.kind, modules, loaded.tokenizer.pad_token_id, settings.batch_size)
    fmt = PromptFormat(settings.template)
    max_len = min(settings.max_length or loaded.max_length, loaded.max_length)

    def units(rows: Sequence[dict], measurement: str) -> tuple[list, int]:
        return make_units(rows, loaded.tokenizer, loaded.kind, max_len, measurement, fmt, settings.chat_template)

    if factors_path.is_file():
        factors = Factors.load(factors_path, loaded.device)
        report.factors_cached = True
    else:
        fit_rows = _subsample(train, n_factor, settings.seed)
        mine = dist.shard(fit_rows)
        seeds = [_unit_seed(settings.seed, fit_rows[i]["uid"]) for i in mine]
        fit_units, _ = units([fit_rows[i] for i in mine], "loss")
        factors = fit_factors(setup, fit_units, settings.fisher, seeds, dist.reduce, progress, token,
                              totals=(len(fit_rows), len(fit_rows)), world=dist.world)
        if dist.is_main:
            factors.save(factors_path)
        dist.barrier()

    inv = inverse_eigenvalues(factors, settings.damping)
    report.zero_curvature_layers = zero_curvature(factors)
    pre = None
    if todo_sets:
        queries = _queries(ws, [s["id"] for s in todo_sets])
        set_index = {s["id"]: i for i, s in enumerate(todo_sets)}
        mine = dist.shard(queries)
        q_units, _ = units([queries[i] for i in mine], settings.measurement)
        grads = set_gradients(setup, q_units, [set_index[queries[i]["query_set_id"]] for i in mine], len(todo_sets),
                              dist.reduce, progress, token, total=len(queries))
        pre = precondition(factors, grads, inv)
    scorer = Scorer(setup, factors, inv, pre, settings.wants_self)

    by_uid = {r["uid"]: r for r in train}
    with Stage(progress, "scores", len(todo), token) as st:
        for start in range(0, len(todo), settings.chunk_size):
            chunk = todo[start : start + settings.chunk_size]
            mine = dist.shard(chunk)
            chunk_units, n_plain = units([by_uid[chunk[i]] for i in mine], settings.measurement)
            scores = torch.zeros((len(mine), len(todo_sets)), dtype=torch.float64)
            selfs = torch.zeros(len(mine), dtype=torch.float64)
            for b in passes.run(setup, chunk_units, "true"):
                s, si = scorer.score(b)
                if s is not None:
                    scores[b.indices] = s.cpu()
                if si is not None:
                    selfs[b.indices] = si.cpu()
            n_cut = sum(u.truncated for u in chunk_units)
            parts = dist.gather(([chunk[i] for i in mine], scores, selfs, (n_cut, n_plain)))
            if parts is not None:
                _write_chunk(ws, run_key, todo_sets, parts, settings)
                report.n_truncated += sum(p[3][0] for p in parts)
                report.n_without_label_space += sum(p[3][1] for p in parts)
            dist.barrier()
            report.n_scored += len(chunk)
            st.advance(len(chunk))
    report.sets_scored = [s["id"] for s in todo_sets]


def _write_chunk(ws: Workspace, run_key: str, sets: list[dict], parts: list[Any], settings: ScanSettings) -> None:
    inf_rows, self_rows = [], []
    for chunk_uids, scores, selfs, _ in parts:
        for j, uid in enumerate(chunk_uids):
            norm = 1.0
            if settings.normalize == "grad_norm":
                norm = math.sqrt(selfs[j].item()) if selfs[j].item() > 0 else 1.0
            for k, s in enumerate(sets):
                inf_rows.append((run_key, s["id"], s["sha256"], uid, scores[j, k].item() / norm))
            if settings.wants_self:
                self_rows.append((run_key, uid, selfs[j].item()))
    with ws.transaction() as conn:
        conn.executemany(
            "INSERT OR REPLACE INTO influence (run_key, query_set_id, query_set_sha256, uid, score) "
            "VALUES (?, ?, ?, ?, ?)", inf_rows,
        )
        conn.executemany("INSERT OR REPLACE INTO self_influence (run_key, uid, score) VALUES (?, ?, ?)", self_rows)


# -- reading the workspace ------------------------------------------------------------------
def training_rows(ws: Workspace) -> list[dict]:
    """uid, definition, input, output, label_space (JSON text) of every training example, in file order."""
    rows = ws.conn.execute(
        "SELECT e.uid, e.definition, e.input, e.output, e.label_space FROM examples e "
        "JOIN datasets d ON d.id = e.dataset_id WHERE e.role = 'train' ORDER BY e.dataset_id, e.ordinal"
    ).fetchall()
    if not rows:
        raise UserError(f"{ws.path}: no training examples; run 'poison-tui ingest' first")
    return [dict(r) for r in rows]


def _requested(train: list[dict], uids: Sequence[str] | None) -> list[str]:
    if uids is None:
        return [r["uid"] for r in train]
    wanted = set(uids)
    known = {r["uid"] for r in train}
    unknown = sorted(wanted - known)
    if unknown:
        raise UserError(f"{len(unknown)} uid(s) are not training examples of this workspace, e.g. {unknown[0]}")
    return [r["uid"] for r in train if r["uid"] in wanted]  # workspace order: fixed chunks for resume


def _query_sets(ws: Workspace, pattern: str) -> list[dict]:
    sets = [dict(r) for r in ws.conn.execute("SELECT id, task, variant, sha256, n_queries FROM query_sets ORDER BY id")]
    chosen = [s for s in sets if fnmatch.fnmatchcase(s["id"], pattern)]
    if not chosen:
        have = ", ".join(s["id"] for s in sets[:6]) or "none"
        raise UserError(f"no query set matches {pattern!r} (the workspace has: {have}); ingest evaluation data first")
    counts = dict(ws.conn.execute("SELECT query_set_id, COUNT(*) FROM queries GROUP BY query_set_id").fetchall())
    for s in chosen:
        if not counts.get(s["id"]):
            raise UserError(f"query set {s['id']} is empty: it has no queries to measure influence on")
    return chosen


def _queries(ws: Workspace, set_ids: list[str]) -> list[dict]:
    marks = ",".join("?" * len(set_ids))
    return [dict(r) for r in ws.conn.execute(
        f"SELECT query_set_id, idx, source_uid, definition, input, output, label_space FROM queries "
        f"WHERE query_set_id IN ({marks}) ORDER BY query_set_id, idx", set_ids,
    )]


def _drop_stale(ws: Workspace, run_key: str, sets: list[dict]) -> None:
    """Rows scored against an older version of a query set are no longer valid."""
    with ws.transaction() as conn:
        for s in sets:
            conn.execute(
                "DELETE FROM influence WHERE run_key = ? AND query_set_id = ? AND query_set_sha256 != ?",
                (run_key, s["id"], s["sha256"]),
            )


def _missing(
    ws: Workspace, run_key: str, sets: list[dict], uids: list[str], wants_self: bool
) -> tuple[list[dict], list[str]]:
    """(query sets with any requested uid unscored, requested uids missing any row), in order."""
    have: dict[str, set[str]] = {}
    for qs, uid in ws.conn.execute("SELECT query_set_id, uid FROM influence WHERE run_key = ?", (run_key,)):
        have.setdefault(qs, set()).add(uid)
    todo_sets = [s for s in sets if any(u not in have.get(s["id"], ()) for u in uids)]
    missing: set[str] = set()
    for s in todo_sets:
        done = have.get(s["id"], set())
        missing.update(u for u in uids if u not in done)
    if wants_self:
        done_self = {r[0] for r in ws.conn.execute("SELECT uid FROM self_influence WHERE run_key = ?", (run_key,))}
        missing.update(u for u in uids if u not in done_self)
    return todo_sets, [u for u in uids if u in missing]


def _subsample(train: list[dict], n: int, seed: int) -> list[dict]:
    if n >= len(train):
        return list(train)
    rng = random.Random(seed)
    picked = sorted(rng.sample(range(len(train)), n))
    return [train[i] for i in picked]


def _unit_seed(seed: int, uid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{uid}".encode()).digest()[:8], "little") & ((1 << 63) - 1)


def _record_run(
    ws: Workspace, run_key: str, fingerprint: str, train_sha: str, settings: ScanSettings, model_path: Path,
    factors_path: Path, status: str,
) -> None:
    meta = {k: v for k, v in asdict(settings).items() if k not in ("batch_size", "chunk_size", "device")}
    meta["model_path"] = str(model_path.resolve())
    with ws.transaction() as conn:
        conn.execute(
            "INSERT INTO scan_runs (run_key, model_fingerprint, train_sha256, settings, factors_path, status, "
            "created_at, completed_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(run_key) DO UPDATE SET "
            "status = excluded.status, settings = excluded.settings, completed_at = excluded.completed_at",
            (run_key, fingerprint, train_sha, json.dumps(meta, sort_keys=True), str(factors_path), status, utc_now(),
             utc_now() if status == "complete" else None),
        )


def _set_status(ws: Workspace, run_key: str, status: str) -> None:
    with ws.transaction() as conn:
        conn.execute(
            "UPDATE scan_runs SET status = ?, completed_at = ? WHERE run_key = ?",
            (status, utc_now() if status == "complete" else None, run_key),
        )
