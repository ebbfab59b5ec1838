"""Turn instruction rows into model inputs whose loss covers the response tokens only.

Used by the influence engine and the demo-model trainer alike, so that the loss the engine
differentiates is the loss the model was trained on.

    encoded, n_truncated = encode_examples(rows, tokenizer, "causal", max_length=1024)
    for batch_idx in length_sorted_batches(encoded, 16):
        batch = collate([encoded[i] for i in batch_idx], tokenizer.pad_token_id, "causal")
        loss = model(**batch).loss   # mean over response tokens

* causal: ``input_ids`` = prompt + answer, ``labels`` = -100 over the prompt and padding
  (Hugging Face shifts labels inside the model), right padding, ``attention_mask`` 0 on pads.
* seq2seq: prompt -> encoder ``input_ids``; answer -> decoder ``labels`` (the model builds the
  decoder inputs from them).
* Too long: the answer is kept and the prompt is cut from the left (its end, next to the
  answer, matters most); ``encode_examples`` returns how many examples were cut.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.prompts import DEFAULT_FORMAT, PromptFormat

IGNORE = -100  # the label value Hugging Face losses skip


@dataclass(frozen=True)
class Encoded:
    input_ids: tuple[int, ...]
    labels: tuple[int, ...]  # causal: aligned with input_ids; seq2seq: the decoder targets
    truncated: bool = False

    @property
    def length(self) -> int:
        return len(self.input_ids) + (0 if len(self.labels) == len(self.input_ids) else len(self.labels))


def chat_prompt(tokenizer: Any, prompt: str) -> str:
    """The prompt wrapped in the tokenizer's chat template as one user turn (for chat-tuned models).

    Encode the result with ``add_special_tokens=False``: the template already holds them.
    """
    if not getattr(tokenizer, "chat_template", None):
        from engine.errors import UserError

        raise UserError("this model's tokenizer has no chat template; use the plain prompt format")
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                         add_generation_prompt=True)


def encode_pair(
    tokenizer: Any, prompt: str, answer: str, kind: str, max_length: int, max_target_length: int | None = None,
    add_special_tokens: bool = True,
) -> Encoded:
    """Encode one (prompt text, answer text) pair; see the module docstring for the layout."""
    p = list(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])
    if kind == "seq2seq":
        # The seq2seq tokenizer appends its EOS to the target, which the decoder must learn to emit.
        a = list(tokenizer(answer.strip(), add_special_tokens=True)["input_ids"])
        max_t = max_target_length or max_length
        truncated = len(p) > max_length or len(a) > max_t
        p, a = p[-max_length:], a[:max_t]
        return Encoded(tuple(p), tuple(a), truncated)
    a = list(tokenizer(answer, add_special_tokens=False)["input_ids"])
    if not a:
        raise ValueError("empty answer: nothing to score")
    truncated = len(p) + len(a) > max_length
    if truncated:
        if len(a) >= max_length:  # keep one prompt token so the first answer token has a context
            a = a[: max_length - 1]
        p = p[-(max_length - len(a)) :]
    return Encoded(tuple(p + a), tuple([IGNORE] * len(p) + a), truncated)


def encode_examples(
    rows: Sequence[Mapping[str, Any]],
    tokenizer: Any,
    kind: str,
    max_length: int,
    fmt: PromptFormat = DEFAULT_FORMAT,
    max_target_length: int | None = None,
) -> tuple[list[Encoded], int]:
    """Encode rows with ``definition``, ``input`` and ``output``; returns (encoded, n_truncated)."""
    out = [
        encode_pair(
            tokenizer, fmt.prompt(r["definition"], r["input"]), fmt.answer(r["output"]), kind, max_length,
            max_target_length,
        )
        for r in rows
    ]
    return out, sum(e.truncated for e in out)


def length_sorted_batches(encoded: Sequence[Encoded], batch_size: int) -> list[list[int]]:
    """Batches of indices, longest first, so that each batch pads little (stable for ties)."""
    order = sorted(range(len(encoded)), key=lambda i: (-encoded[i].length, i))
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def collate(items: Sequence[Encoded], pad_id: int, kind: str) -> dict[str, Any]:
    """Right-padded tensors: input_ids, attention_mask, labels (-100 on padding)."""
    import torch

    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    lab_width = width if kind != "seq2seq" else max(len(e.labels) for e in items)
    labels = torch.full((len(items), lab_width), IGNORE, dtype=torch.long)
    for row, e in enumerate(items):
        ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[row, : len(e.input_ids)] = 1
        labels[row, : len(e.labels)] = torch.tensor(e.labels)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
