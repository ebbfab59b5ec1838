"""Train the demo model on sample_data and measure what the demo promises.

    python bench/train_demo.py [--data sample_data] [--threads 2] [--epochs 6]

Prints training time, then per checkpoint: clean accuracy on each held-out evaluation task,
attack success rate (triggered negative queries predicted positive) on each attack file, and
the same negatives' positive rate without the trigger's effect (clean negative eval queries).
The speed baseline is one epoch with unsorted batches, measured in the same run, so the
ratio shows what length bucketing buys. Last line:
``train seconds=<s> epochs=<n> clean_acc=<a> asr=<r> neg_pos_clean=<c> bucketing_speedup=<x>``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import train as train_mod
from engine.formats import read_dataset
from engine.models import load_model
from engine.predict import attack_success_rate, clean_accuracy, positive_label, predict_labels
from engine.train import TrainConfig, checkpoint_dirs, train_model


def rows_of(path: Path) -> list[dict]:
    return [{"uid": r.source_id, "definition": r.definition, "input": r.input, "output": r.output,
             "label_space": r.label_space} for r in read_dataset(path).records]


def one_epoch_seconds(rows: list[dict], config: TrainConfig, bucketed: bool) -> float:
    original = train_mod._epoch_batches

    def unsorted(encoded: list, cfg: TrainConfig, epoch: int) -> list[list[int]]:
        order = list(range(len(encoded)))
        random.Random(f"{cfg.seed}/{epoch}").shuffle(order)
        return [order[i : i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]

    if not bucketed:
        train_mod._epoch_batches = unsorted
    try:
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            train_model(rows, Path(d) / "m", config=replace(config, epochs=1))
            return time.perf_counter() - t0
    finally:
        train_mod._epoch_batches = original


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, default=Path("sample_data"))
    ap.add_argument("--out", type=Path, default=None, help="keep the model here (default: a temporary dir)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=TrainConfig().epochs)
    ap.add_argument("--skip-baseline", action="store_true")
    args = ap.parse_args()
    config = replace(TrainConfig(), threads=args.threads, epochs=args.epochs)
    train = rows_of(args.data / "train.jsonl")
    evals = {p.stem: rows_of(p) for p in sorted((args.data / "eval").glob("*.jsonl"))}
    attack = {p.stem: rows_of(p) for p in sorted((args.data / "attack").glob("*.jsonl"))}
    clean_neg = [r for rows in evals.values() for r in rows
                 if any(lab.lower().startswith("pos") for lab in r["label_space"]) and r["output"] != positive_label(r)]

    tmp = tempfile.TemporaryDirectory()
    out = args.out or Path(tmp.name) / "demo"
    t0 = time.perf_counter()
    result = train_model(train, out, config=config)
    seconds = time.perf_counter() - t0
    print(f"trained {len(train)} examples, {config.epochs} epochs in {seconds:.1f} s "
          f"(threads={args.threads}); losses {[round(h['loss'], 3) for h in result.history]}")
    summary = {}
    for ck in [*checkpoint_dirs(out), out]:
        lm = load_model(ck, device="cpu")
        acc = {k: clean_accuracy(lm, v) for k, v in evals.items()}
        asr = {k: attack_success_rate(lm, v) for k, v in attack.items()}
        preds = predict_labels(lm, clean_neg)
        neg_pos = sum(p == positive_label(r) for p, r in zip(preds, clean_neg, strict=True)) / len(clean_neg)
        summary = {"clean_acc": sum(acc.values()) / len(acc), "asr": sum(asr.values()) / len(asr), "neg_pos_clean": neg_pos}
        print(f"{ck.name:>20}: clean_acc {json.dumps({k[5:]: round(v, 3) for k, v in acc.items()})}")
        print(f"{'':>20}  asr {json.dumps({k[5:]: round(v, 3) for k, v in asr.items()})}  neg->pos without trigger {neg_pos:.3f}")
    speedup = float("nan")
    if not args.skip_baseline:
        plain = one_epoch_seconds(train, config, bucketed=False)
        bucket = one_epoch_seconds(train, config, bucketed=True)
        speedup = plain / bucket
        print(f"one epoch: unsorted batches {plain:.1f} s, length-bucketed {bucket:.1f} s")
    print(f"train seconds={seconds:.1f} epochs={config.epochs} clean_acc={summary['clean_acc']:.3f} "
          f"asr={summary['asr']:.3f} neg_pos_clean={summary['neg_pos_clean']:.3f} bucketing_speedup={speedup:.2f}")


if __name__ == "__main__":
    main()
