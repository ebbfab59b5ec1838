"""Shared pieces of the sample/train/predict tests: a tiny recipe and tiny generated data."""

from __future__ import annotations

from engine.sample_gen import SampleSpec, generate
from engine.train import TrainConfig

# A few thousand parameters: trains in a second or two on one thread, yet learns simple tasks.
TINY = TrainConfig(epochs=3, batch_size=8, lr=5e-3, vocab_size=300, n_layer=1, n_embd=32, n_head=2,
                   max_length=128, threads=1, warmup_frac=0.1)


def sni_rows(records: list[dict]) -> list[dict]:
    """SNI JSONL records as canonical rows (uid = the record id)."""
    return [{"uid": r["id"], "task": r["Task"], "definition": r["Definition"][0], "input": r["Instance"]["input"],
             "output": r["Instance"]["output"][0], "label_space": r["label_space"]} for r in records]


def small_sample(n_train: int = 120, seed: int = 3) -> dict[str, list[dict]]:
    return generate(SampleSpec(seed=seed, n_train=n_train, n_eval=20, n_attack=10))


def toy_rows(n: int, offset: int = 0) -> list[dict]:
    """A trivially learnable two-label task: the label is written in the input's first word."""
    words = ["sunny", "rainy"]
    rows = []
    for i in range(offset, offset + n):
        w = words[i % 2]
        rows.append({"uid": f"toy-{i}", "definition": "Say which weather word starts the text.",
                     "input": f"{w} day number {i % 7} in town", "output": "bright" if w == "sunny" else "dark",
                     "label_space": ["bright", "dark"]})
    return rows
