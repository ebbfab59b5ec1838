"""engine.batching: response-only loss masks, truncation that keeps the answer, padding, seq2seq."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from influence_fixtures import make_gpt2, make_t5

from engine.batching import IGNORE, collate, encode_examples, encode_pair, length_sorted_batches
from engine.models import load_model


@pytest.fixture(scope="module")
def lm(tmp_path_factory: pytest.TempPathFactory):
    return load_model(make_gpt2(tmp_path_factory.mktemp("m") / "gpt2", n_layer=1, n_embd=16))


ROW = {"definition": "Classify the sentiment", "input": "good film", "output": "positive"}


def test_causal_labels_cover_the_answer_only(lm) -> None:
    (enc,), n_cut = encode_examples([ROW], lm.tokenizer, "causal", 64)
    tok = lm.tokenizer
    prompt = tok("Definition: Classify the sentiment\nInput: good film\nOutput:")["input_ids"]
    answer = tok(" positive", add_special_tokens=False)["input_ids"]
    assert n_cut == 0
    assert list(enc.input_ids) == prompt + answer
    assert list(enc.labels) == [IGNORE] * len(prompt) + answer


def test_truncation_keeps_the_answer_and_cuts_the_prompt_from_the_left(lm) -> None:
    long = dict(ROW, input=" ".join(["good"] * 100))
    encoded, n_cut = encode_examples([ROW, long], lm.tokenizer, "causal", 20)
    assert n_cut == 1
    short, cut = encoded
    assert not short.truncated and cut.truncated
    assert len(cut.input_ids) == 20
    assert cut.input_ids[-3:] == short.input_ids[-3:]  # "Output", ":", "positive" survive
    assert [x for x in cut.labels if x != IGNORE] == [x for x in short.labels if x != IGNORE]


def test_answer_longer_than_context_keeps_one_prompt_token(lm) -> None:
    e = encode_pair(lm.tokenizer, "Input: good", " " + " ".join(["bad"] * 30), "causal", 8)
    assert e.truncated and len(e.input_ids) == 8
    assert e.labels[0] == IGNORE and all(x != IGNORE for x in e.labels[1:])


def test_collate_right_pads_and_masks(lm) -> None:
    encoded, _ = encode_examples([ROW, dict(ROW, input="good film and a great story")], lm.tokenizer, "causal", 64)
    pad = lm.tokenizer.pad_token_id
    batch = collate(encoded, pad, "causal")
    n0, n1 = len(encoded[0].input_ids), len(encoded[1].input_ids)
    assert batch["input_ids"].shape == (2, n1)
    assert batch["attention_mask"][0].tolist() == [1] * n0 + [0] * (n1 - n0)
    assert (batch["input_ids"][0, n0:] == pad).all()
    assert (batch["labels"][0, n0:] == IGNORE).all()
    # the HF loss over this batch is the mean over answer tokens only: equal to unpadded per-row losses
    with torch.no_grad():
        batched = lm.model(**batch).loss
        alone = [lm.model(**collate([e], pad, "causal")).loss for e in encoded]
    assert torch.allclose(batched, torch.stack(alone).mean(), atol=1e-5)


def test_length_sorted_batches_are_longest_first_and_cover_everything(lm) -> None:
    rows = [dict(ROW, input=" ".join(["good"] * k)) for k in (3, 9, 1, 7, 5)]
    encoded, _ = encode_examples(rows, lm.tokenizer, "causal", 64)
    batches = length_sorted_batches(encoded, 2)
    assert batches == [[1, 3], [4, 0], [2]]


def test_seq2seq_prompt_to_encoder_answer_to_decoder(tmp_path: Path) -> None:
    t5 = load_model(make_t5(tmp_path / "t5"))
    (enc,), _ = encode_examples([ROW], t5.tokenizer, "seq2seq", 64)
    answer = t5.tokenizer("positive")["input_ids"]
    assert list(enc.labels) == answer  # no prompt in the decoder targets
    batch = collate([enc], t5.tokenizer.pad_token_id, "seq2seq")
    assert batch["labels"].shape == (1, len(answer))
    assert torch.isfinite(t5.model(**batch).loss)
