"""Accuracy and speed of the sentiment scorers on rt-polarity (../shared/data/rt_polarity.jsonl).

    python bench/sentiment.py [--limit N]

Scorers: ``vader`` (lexicon, no training) and ``tfidf_lr`` (TF-IDF + logistic regression,
5-fold cross-fitted: every text is scored by a model that did not see it). Accuracy is the
share of texts whose score sign matches the label (VADER's 0 counts as positive); the
baseline in the same run is the majority class. Speed is texts per second of the whole
scoring call (for tfidf_lr: fitting the five fold models and the full model included), and
the last line gives the ratio against VADER measured in the same run:

    sentiment vader_acc=<a> tfidf_lr_acc=<b> majority_acc=<m> vader_texts_per_s=<v> tfidf_lr_over_vader_time=<r>
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "rt_polarity.jsonl"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=None, help="use the first N texts of a seeded shuffle")
    args = ap.parse_args()
    import numpy as np

    from engine.sentiment import CrossFitLR, vader_scores

    rows = [json.loads(line) for line in DATA.open()]
    rng = np.random.default_rng(0)
    rows = [rows[i] for i in rng.permutation(len(rows))[: args.limit]]
    texts = [r["text"] for r in rows]
    y = np.array([1 if r["label"] == "positive" else -1 for r in rows])
    majority = max(np.mean(y == 1), np.mean(y == -1))

    t0 = time.perf_counter()
    v = vader_scores(texts)
    t_vader = time.perf_counter() - t0
    t0 = time.perf_counter()
    lr = CrossFitLR(folds=5, seed=0).fit(texts, y).oof()
    t_lr = time.perf_counter() - t0

    acc_v = float(np.mean(np.where(v >= 0, 1, -1) == y))
    acc_lr = float(np.mean(np.where(lr >= 0, 1, -1) == y))
    print(f"rt-polarity, {len(texts)} texts (2-core CPU, shared)")
    print("| scorer | accuracy | seconds | texts/s |\n|---|---|---|---|")
    print(f"| majority class (baseline) | {majority:.3f} | - | - |")
    print(f"| vader | {acc_v:.3f} | {t_vader:.1f} | {len(texts) / t_vader:.0f} |")
    print(f"| tfidf_lr (5-fold cross-fitted, fit included) | {acc_lr:.3f} | {t_lr:.1f} | {len(texts) / t_lr:.0f} |")
    print(f"sentiment vader_acc={acc_v:.3f} tfidf_lr_acc={acc_lr:.3f} majority_acc={majority:.3f} "
          f"vader_texts_per_s={len(texts) / t_vader:.0f} tfidf_lr_over_vader_time={t_lr / t_vader:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
