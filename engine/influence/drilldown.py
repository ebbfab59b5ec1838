"""Drill-down: which individual queries one training example influences most.

Influence is symmetric in its two gradients (``g_q^T H^-1 g_i``), so the example's gradient
is preconditioned once and the queries are scored against it like training examples: one
pass over the queries, nothing per query kept in memory.
"""

from __future__ import annotations

import fnmatch
import json
import math
from pathlib import Path

from engine.errors import UserError
from engine.workspace import Workspace


def top_queries(
    ws: Workspace, run_key: str, uid: str, k: int = 10, query_sets: str = "*"
) -> list[dict]:
    """The ``k`` queries with the largest |influence| of training example ``uid`` under scan ``run_key``.

    Each item: query_set_id, idx, source_uid, input, output, score (same scale and sign as the
    scan's ``influence`` rows, normalised the same way).
    """
    from engine.influence import passes
    from engine.influence.factors import Factors
    from engine.influence.hooks import select_modules
    from engine.influence.losses import make_units
    from engine.influence.scoring import Scorer, inverse_eigenvalues, precondition, set_gradients
    from engine.models import load_model
    from engine.prompts import PromptFormat

    run = ws.conn.execute("SELECT * FROM scan_runs WHERE run_key = ?", (run_key,)).fetchone()
    if run is None:
        raise UserError(f"no scan {run_key} in this workspace")
    settings = json.loads(run["settings"])
    row = ws.conn.execute(
        "SELECT uid, definition, input, output, label_space FROM examples WHERE uid = ? AND role = 'train'", (uid,)
    ).fetchone()
    if row is None:
        raise UserError(f"{uid}: not a training example of this workspace")
    factors_path = Path(run["factors_path"])
    if not factors_path.is_file():
        raise UserError(f"{factors_path}: the scan's factors are gone; re-run 'poison-tui scan'")
    import torch

    dtype = getattr(torch, settings["dtype"]) if settings.get("dtype") else None
    loaded = load_model(settings["model_path"], dtype=dtype)
    if loaded.fingerprint != run["model_fingerprint"]:
        raise UserError(f"{settings['model_path']}: the model changed since scan {run_key}; re-run the scan")
    modules = select_modules(
        loaded.model, tuple(settings["modules"]) if settings["modules"] else None, settings["last_blocks"]
    )
    setup = passes.Setup(loaded.model, loaded.kind, modules, loaded.tokenizer.pad_token_id)
    max_len = min(settings["max_length"] or loaded.max_length, loaded.max_length)
    fmt = PromptFormat(settings["template"])
    measurement = settings["measurement"]
    factors = Factors.load(factors_path, loaded.device)
    inv = inverse_eigenvalues(factors, settings["damping"])

    chat = bool(settings.get("chat_template"))
    unit, _ = make_units([dict(row)], loaded.tokenizer, loaded.kind, max_len, measurement, fmt, chat)
    grad = set_gradients(setup, unit, [0], 1)
    pre = precondition(factors, grad, inv)
    norm = 1.0
    if settings["normalize"] == "grad_norm":
        self_inf = sum(float(grad[n].reshape(-1).float() @ pre[n][0]) for n in modules)
        norm = math.sqrt(self_inf) if self_inf > 0 else 1.0

    set_ids = [r[0] for r in ws.conn.execute("SELECT id FROM query_sets ORDER BY id") if fnmatch.fnmatchcase(r[0], query_sets)]
    queries = [dict(r) for r in ws.conn.execute(
        "SELECT query_set_id, idx, source_uid, definition, input, output, label_space FROM queries "
        "ORDER BY query_set_id, idx"
    ) if r["query_set_id"] in set(set_ids)]
    q_units, _ = make_units(queries, loaded.tokenizer, loaded.kind, max_len, measurement, fmt, chat)
    scorer = Scorer(setup, factors, inv, pre, False)
    scores = [0.0] * len(queries)
    for b in passes.run(setup, q_units, "true"):
        s, _ = scorer.score(b)
        for j, i in enumerate(b.indices):
            scores[i] = float(s[j, 0]) / norm
    order = sorted(range(len(queries)), key=lambda i: -abs(scores[i]))[:k]
    return [
        {"query_set_id": queries[i]["query_set_id"], "idx": queries[i]["idx"], "source_uid": queries[i]["source_uid"],
         "input": queries[i]["input"], "output": queries[i]["output"], "score": scores[i]}
        for i in order
    ]
