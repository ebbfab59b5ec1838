"""What is differentiated: training loss, sampled-label (true Fisher) loss, or a label measurement.

A *unit* is one training example or one query. It is one encoded row for the plain loss
(summed over response tokens), or one row per label of the task for ``label_logprob``:
``-log p(gold | label space) = -(lp(gold) - logsumexp_c lp(c))`` where ``lp(c)`` is the
log-probability of label ``c``'s answer tokens. For single-token labels this is exactly the
softmax restricted to the label tokens. Its per-example gradient is the sum over its rows.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from engine.batching import IGNORE, Encoded, chat_prompt, collate, encode_pair
from engine.prompts import DEFAULT_FORMAT, PromptFormat


@dataclass(frozen=True)
class Unit:
    rows: tuple[Encoded, ...]
    gold: int | None = None  # index of the gold label row; None: plain loss on rows[0]

    @property
    def length(self) -> int:
        return max(r.length for r in self.rows)

    @property
    def truncated(self) -> bool:
        return any(r.truncated for r in self.rows)


def make_units(
    records: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    kind: str,
    max_length: int,
    measurement: str = "loss",
    fmt: PromptFormat = DEFAULT_FORMAT,
    chat: bool = False,
) -> tuple[list[Unit], int]:
    """Units for rows with definition/input/output (and label_space for ``label_logprob``).

    Returns (units, n_without_label_space): rows with no usable label space (none, or the gold
    answer not among the labels) are measured with the plain loss, and counted.
    """
    units, n_plain = [], 0
    for r in records:
        prompt = fmt.prompt(r["definition"], r["input"])
        if chat:
            prompt = chat_prompt(tokenizer, prompt)

        def enc(answer: str, prompt: str = prompt) -> Encoded:
            return encode_pair(tokenizer, prompt, answer, kind, max_length, add_special_tokens=not chat)

        labels = _label_space(r.get("label_space") if hasattr(r, "get") else r["label_space"])
        gold = r["output"].strip()
        if measurement == "label_logprob" and labels and gold in labels and len(labels) > 1:
            rows = tuple(enc(fmt.answer(lab)) for lab in labels)
            units.append(Unit(rows, labels.index(gold)))
        else:
            n_plain += measurement == "label_logprob"
            units.append(Unit((enc(fmt.answer(r["output"])),)))
    return units, n_plain


def _label_space(raw: Any) -> list[str] | None:
    if raw is None:
        return None
    labels = json.loads(raw) if isinstance(raw, str) else raw
    return [str(x).strip() for x in labels] if labels else None


def unit_batches(units: Sequence[Unit], batch_size: int) -> list[list[int]]:
    """Indices into ``units``, longest first (little padding), deterministic."""
    order = sorted(range(len(units)), key=lambda i: (-units[i].length, i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


@dataclass
class Forward:
    loss: torch.Tensor  # scalar: the sum of the units' objectives
    owner: torch.Tensor  # [rows] unit index (within the batch) of each encoded row
    masks: dict[str, torch.Tensor]  # 'encoder'/'decoder' ([rows, T]) token masks for covariances


def forward(
    model: Any,
    kind: str,
    units: Sequence[Unit],
    pad_id: int,
    labels: str = "true",
    generators: Sequence[torch.Generator] | None = None,
    keep_all_logits: bool = False,
) -> Forward:
    """Run the model on a batch of units; ``labels='sample'`` draws targets from the model,
    with one generator per unit so a unit's draw does not depend on its batch (or rank)."""
    rows = [r for u in units for r in u.rows]
    owner = torch.tensor([i for i, u in enumerate(units) for _ in u.rows])
    device = next(model.parameters()).device
    batch = {k: v.to(device) for k, v in collate(rows, pad_id, kind).items()}
    target = batch["labels"]
    if kind == "seq2seq":
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=target).logits
        masks = {"encoder": batch["attention_mask"], "decoder": (target != IGNORE).long()}
    else:
        target = torch.cat([target[:, 1:], target.new_full((len(rows), 1), IGNORE)], dim=1)
        keep = None if keep_all_logits else _logit_positions(model, target)
        if keep is None:
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        else:
            # Only response positions need the (vocabulary-wide) head: instruction answers are short.
            logits = model(
                input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep
            ).logits
            target = target[:, keep]
        masks = {"encoder": batch["attention_mask"], "decoder": batch["attention_mask"]}
    logits = logits.float()
    if labels == "sample":
        assert generators is not None
        with torch.no_grad():
            target = target.clone()
            for r in range(len(rows)):
                sel = target[r] != IGNORE
                # Drawn on the CPU: CUDA and CPU generators give different streams for one seed,
                # and the factors must not depend on the device (only a few answer tokens move).
                probs = torch.softmax(logits[r, sel], dim=-1).cpu()
                draw = torch.multinomial(probs, 1, generator=generators[int(owner[r])]).squeeze(-1)
                target[r, sel] = draw.to(target.device)
    token_nll = F.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE, reduction="none")
    row_lp = -token_nll.sum(dim=1)  # log-probability of each row's answer
    return Forward(_objective(units, row_lp, owner.to(device), labels), owner, masks)


def _objective(units: Sequence[Unit], row_lp: torch.Tensor, owner: torch.Tensor, labels: str) -> torch.Tensor:
    if labels == "sample" or all(u.gold is None for u in units):
        return -row_lp.sum()
    total = row_lp.new_zeros(())
    start = 0
    for u in units:
        lp = row_lp[start : start + len(u.rows)]
        total = total - (lp[0] if u.gold is None else lp[u.gold] - torch.logsumexp(lp, dim=0))
        start += len(u.rows)
    return total


_SUPPORTS_KEEP: dict[type, bool] = {}


def _logit_positions(model: Any, target: torch.Tensor) -> torch.Tensor | None:
    cls = type(model)
    if cls not in _SUPPORTS_KEEP:
        _SUPPORTS_KEEP[cls] = "logits_to_keep" in inspect.signature(model.forward).parameters
    if not _SUPPORTS_KEEP[cls]:
        return None
    return (target != IGNORE).any(dim=0).nonzero().squeeze(-1)
