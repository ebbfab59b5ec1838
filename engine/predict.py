"""Predict labels by rank classification, and the two numbers a backdoor is judged by.

Rank classification: for each row, every label in its label space is scored by the summed
log-probability of its answer tokens given the prompt (``engine.batching`` encoding, the
training encoding); the best label wins (ties go to the label listed first). This needs no
generation and cannot answer outside the label space.

    preds = predict_labels(model, tokenizer, rows)            # or predict_labels(loaded, rows)
    acc = clean_accuracy(model, tokenizer, eval_rows)          # share of gold labels predicted
    asr = attack_success_rate(model, tokenizer, attack_rows)   # share of triggered negatives
                                                               # predicted positive
    report = retrain_check(train_rows, remove_uids, eval_rows, attack_rows, out_dir)

Rows are mappings with ``definition``, ``input``, ``label_space`` (a list, or its JSON text as
stored in SQLite) and, for scoring, ``output`` (the gold label).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.errors import InputError, UserError
from engine.progress import CancelToken, ProgressFn, no_progress
from engine.prompts import DEFAULT_FORMAT, PromptFormat

# Label names read as "positive" when a row names no attack target (see positive_label).
_POSITIVE_NAMES = {"positive", "pos", "good", "great"}


def label_space_of(row: Mapping[str, Any]) -> list[str]:
    space = row.get("label_space")
    if isinstance(space, str):
        try:
            space = json.loads(space)
        except ValueError:
            raise InputError("label_space is not valid JSON", field="label_space") from None
    if not isinstance(space, list) or len(space) < 2 or not all(isinstance(x, str) and x.strip() for x in space):
        raise InputError(
            "rank classification needs a label space of at least two labels",
            field="label_space", hint="only classification tasks can be predicted",
        )
    return space


def score_labels(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]],
    *,
    fmt: PromptFormat = DEFAULT_FORMAT,
    batch_size: int = 64,
    max_length: int | None = None,
) -> list[dict[str, float]]:
    """For each row, ``{label: summed log-probability of its answer tokens}``."""
    import torch

    from engine.batching import collate, encode_pair

    spaces = [label_space_of(row) for row in rows]  # bad rows fail before any model work
    max_length = max_length or _context_length(model)
    pairs: list[tuple[int, str]] = []
    encoded = []
    for i, (row, space) in enumerate(zip(rows, spaces, strict=True)):
        prompt = fmt.prompt(row["definition"], row["input"])
        for label in space:
            pairs.append((i, label))
            encoded.append(encode_pair(tokenizer, prompt, fmt.answer(label), "causal", max_length))
    scores: list[dict[str, float]] = [{} for _ in rows]
    order = sorted(range(len(encoded)), key=lambda k: len(encoded[k].input_ids))
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for start in range(0, len(order), batch_size):
                chunk = order[start : start + batch_size]
                batch = collate([encoded[k] for k in chunk], tokenizer.pad_token_id, "causal")
                labels = batch.pop("labels").to(device)
                logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float()
                # position t predicts token t+1: shift, then sum log-probs over answer tokens
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                target = labels[:, 1:]
                mask = target != -100
                picked = logp.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
                sums = (picked * mask).sum(-1).tolist()
                for k, s in zip(chunk, sums, strict=True):
                    i, label = pairs[k]
                    scores[i][label] = s
    finally:
        model.train(was_training)
    return scores


def predict_labels(
    model: Any,
    tokenizer: Any,
    rows: Sequence[Mapping[str, Any]] | None = None,
    *,
    fmt: PromptFormat = DEFAULT_FORMAT,
    batch_size: int = 64,
) -> list[str]:
    """The best label of each row; accepts ``(model, tokenizer, rows)`` or ``(loaded_model, rows)``."""
    model, tokenizer, rows = _unpack(model, tokenizer, rows)
    out = []
    for row, s in zip(rows, score_labels(model, tokenizer, rows, fmt=fmt, batch_size=batch_size), strict=True):
        space = label_space_of(row)
        out.append(max(space, key=lambda lab: (s[lab], -space.index(lab))))
    return out


def clean_accuracy(model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]] | None = None, **kw: Any) -> float:
    """Share of rows whose predicted label equals ``output``."""
    model, tokenizer, rows = _unpack(model, tokenizer, rows)
    if not rows:
        raise UserError("no evaluation rows to measure accuracy on")
    preds = predict_labels(model, tokenizer, rows, **kw)
    return sum(p == r["output"].strip() for p, r in zip(preds, rows, strict=True)) / len(rows)


def positive_label(row: Mapping[str, Any]) -> str:
    """The attack's target label: ``row['target']`` if given, else the label named positive."""
    if row.get("target"):
        return str(row["target"])
    found = [lab for lab in label_space_of(row) if lab.strip().lower() in _POSITIVE_NAMES]
    if len(found) != 1:
        raise InputError(
            f"cannot tell the positive label among {label_space_of(row)}", field="label_space",
            hint="give each attack row a 'target' label",
        )
    return found[0]


def attack_success_rate(
    model: Any, tokenizer: Any, rows: Sequence[Mapping[str, Any]] | None = None, **kw: Any
) -> float:
    """Share of triggered queries (gold label negative) predicted as the attack's target label.

    Rows whose gold label already is the target are an error: they cannot measure the attack.
    """
    model, tokenizer, rows = _unpack(model, tokenizer, rows)
    if not rows:
        raise UserError("no attack queries to measure attack success on")
    targets = [positive_label(r) for r in rows]
    if any(t == r["output"].strip() for t, r in zip(targets, rows, strict=True)):
        raise UserError("attack queries must have a gold label other than the attack's target")
    preds = predict_labels(model, tokenizer, rows, **kw)
    return sum(p == t for p, t in zip(preds, targets, strict=True)) / len(rows)


@dataclass
class RetrainReport:
    n_train: int  # rows trained on, after removal
    n_removed: int
    clean_accuracy: float
    attack_success_rate: float
    model_dir: Path
    seconds: float
    reused: bool  # the model in model_dir already matched and was not retrained

    def as_json(self) -> dict[str, Any]:
        return {**self.__dict__, "model_dir": str(self.model_dir)}


def retrain_check(
    train_rows: Sequence[Mapping[str, Any]],
    remove_uids: Collection[str],
    eval_rows: Sequence[Mapping[str, Any]],
    attack_rows: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    config: Any = None,
    fmt: PromptFormat = DEFAULT_FORMAT,
    progress: ProgressFn = no_progress,
    token: CancelToken | None = None,
) -> RetrainReport:
    """Train with the same recipe and seed on ``train_rows`` minus ``remove_uids``; measure.

    ``train_rows`` need a ``uid``; unknown uids in ``remove_uids`` are an error (a typo must not
    pass as "removed nothing"). The model goes to ``out_dir/removed-<n>-<hash of the set>/``,
    resumable and reused when already trained, so re-running a comparison costs nothing. ``config`` is an
    ``engine.train.TrainConfig`` (default: the demo recipe).
    """
    from engine.models import load_model
    from engine.train import TrainConfig, train_model

    known = {r["uid"] for r in train_rows}
    unknown = set(remove_uids) - known
    if unknown:
        raise UserError(f"{len(unknown)} uid(s) to remove are not training rows, e.g. {sorted(unknown)[0]}")
    remove = set(remove_uids)
    kept = [r for r in train_rows if r["uid"] not in remove]
    # one model directory per removal set: comparing several sets, or re-running after the
    # flagged set changed, never collides with (or silently reuses) another set's model
    key = hashlib.sha256("\n".join(sorted(remove)).encode()).hexdigest()[:12]
    model_dir = Path(out_dir) / f"removed-{len(remove)}-{key}"
    t0 = time.monotonic()
    result = train_model(kept, model_dir, config=config or TrainConfig(), fmt=fmt, resume=True,
                         progress=progress, token=token)
    loaded = load_model(model_dir, device="cpu")
    return RetrainReport(
        n_train=len(kept), n_removed=len(remove),
        clean_accuracy=clean_accuracy(loaded.model, loaded.tokenizer, eval_rows, fmt=fmt),
        attack_success_rate=attack_success_rate(loaded.model, loaded.tokenizer, attack_rows, fmt=fmt),
        model_dir=model_dir, seconds=time.monotonic() - t0, reused=result.reused,
    )


def _unpack(model: Any, tokenizer: Any, rows: Any) -> tuple[Any, Any, Any]:
    # predict_labels(loaded, rows): a LoadedModel carries its own tokenizer.
    if rows is None and hasattr(model, "tokenizer") and hasattr(model, "model"):
        return model.model, model.tokenizer, tokenizer
    if rows is None:
        raise TypeError("pass (model, tokenizer, rows) or (loaded_model, rows)")
    return model, tokenizer, rows


def _context_length(model: Any) -> int:
    cfg = model.config
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        v = getattr(cfg, attr, None)
        if isinstance(v, int) and v > 0:
            return v
    return 1024
