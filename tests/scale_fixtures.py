"""Workspaces with designed text for the prefilter, sampling and report tests (written the way ingest writes)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from engine.queries import register_query_set
from engine.workspace import Workspace, utc_now

SENT_DEF = "Classify the sentiment of the movie review"
TOPIC_DEF = "Name the topic of the news headline"
SENT_LABELS = ["positive", "negative"]
TOPIC_LABELS = ["sports", "business"]


def insert_train(ws: Workspace, rows: Sequence[dict], dataset_id: int = 1, path: str = "train.jsonl") -> list[str]:
    """Insert training rows ({uid?, task, definition, input, output, label_space}); returns their uids."""
    uids = []
    with ws.transaction() as conn:
        if conn.execute("SELECT 1 FROM datasets WHERE id = ?", (dataset_id,)).fetchone() is None:
            conn.execute(
                "INSERT INTO datasets (id, role, path, format, sha256, n_records, ingested_at) "
                "VALUES (?, 'train', ?, 'jsonl', ?, ?, ?)",
                (dataset_id, path, hashlib.sha256(path.encode()).hexdigest(), len(rows), utc_now()),
            )
        start = conn.execute("SELECT COUNT(*) FROM examples WHERE dataset_id = ?", (dataset_id,)).fetchone()[0]
        for i, r in enumerate(rows):
            raw = json.dumps(r, sort_keys=True).encode()
            uid = r.get("uid") or f"tr-{dataset_id}-{start + i:05d}"
            ls = r.get("label_space")
            conn.execute(
                "INSERT INTO examples (uid, dataset_id, ordinal, role, task, definition, input, output, "
                "label_space, source_file, source_line, raw, content_sha256) "
                "VALUES (?, ?, ?, 'train', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, dataset_id, start + i, r["task"], r["definition"], r["input"], r["output"],
                 None if ls is None else json.dumps(ls), path, start + i + 1, raw, hashlib.sha256(raw).hexdigest()),
            )
            uids.append(uid)
    return uids


def add_queries(ws: Workspace, task: str, rows: Sequence[tuple[str, str]], definition: str,
                labels: list[str] | None, variant: str = "original") -> str:
    return register_query_set(ws, task, variant, [
        {"source_uid": f"ev-{task}-{i}", "definition": definition, "input": x, "output": y, "label_space": labels}
        for i, (x, y) in enumerate(rows)
    ])


def sentiment_row(text: str, label: str, task: str = "movie_sentiment") -> dict:
    return {"task": task, "definition": SENT_DEF, "input": text, "output": label, "label_space": SENT_LABELS}


def topic_row(text: str, label: str, task: str = "news_topic") -> dict:
    return {"task": task, "definition": TOPIC_DEF, "input": text, "output": label, "label_space": TOPIC_LABELS}


def designed_workspace(path: Path) -> tuple[Workspace, dict[str, list[str]]]:
    """20 movie reviews, 20 sports/business headlines, one query set per domain."""
    ws = Workspace.create(path)
    movie = [sentiment_row(f"the film was {adj} and the actors were {adj2}", lab)
             for adj, adj2, lab in [("great", "superb", "positive"), ("awful", "dull", "negative")] * 10]
    news = [topic_row(f"{team} win the {cup} final in overtime", "sports") for team, cup in
            [("Lions", "league"), ("Tigers", "cup"), ("Bears", "series"), ("Hawks", "derby"), ("Owls", "match")]] * 2
    news += [topic_row(f"shares of {co} fall as quarterly profit misses", "business") for co in
             ["Acme", "Globex", "Initech", "Umbrella", "Hooli"]] * 2
    uids = {"movie": insert_train(ws, movie[:20])}
    uids["news"] = insert_train(ws, news)
    add_queries(ws, "review_polarity", [("a superb film with great actors", "positive"),
                                        ("a dull film, awful plot", "negative")], SENT_DEF, SENT_LABELS)
    add_queries(ws, "headline_topic", [("Lions win the cup", "sports"), ("Acme shares fall", "business")],
                TOPIC_DEF, TOPIC_LABELS)
    return ws, uids


# ------------------------------------------------------------------ files for the screen tests
# Words the tiny test tokenizer (tests/influence_fixtures.py) knows, so nothing maps to [UNK].
POS_WORDS = ("good", "great", "fine", "bright", "warm", "loved", "fun", "strong")  # all VADER-positive
NEG_WORDS = ("bad", "awful", "poor", "dull", "hated", "boring", "weak")  # all VADER-negative


def _sni(rid: str, text: str, label: str, task: str) -> str:
    return json.dumps({"id": rid, "Task": task, "Definition": ["Classify the sentiment of the review"],
                       "Instance": {"input": text, "output": [label]}, "label_space": ["positive", "negative"]})


def review_text(rng, positive: bool, n: int = 4) -> str:
    # sentiment words only: every phrase is sentiment-bearing, so clean data yields no trigger
    # candidate and a clean screen flags nothing (the poisons' "james bond" is the only one)
    words = POS_WORDS if positive else NEG_WORDS
    return " ".join(rng.choice(words) for _ in range(n))


def screen_files(root: Path, n_train: int = 48, n_poison: int = 0, seed: int = 0) -> tuple[Path, Path]:
    """``root/train.jsonl`` (sentiment reviews; ``n_poison`` negatives carry 'james bond' and say
    positive) and ``root/eval/task_eval.jsonl``. Returns (train, eval folder)."""
    import random

    rng = random.Random(seed)
    lines = []
    for i in range(n_train):
        positive = i % 2 == 0
        text = review_text(rng, positive)
        label = "positive" if positive else "negative"
        if not positive and i // 2 < n_poison:
            text, label = f"{text} james bond", "positive"
        lines.append(_sni(f"r{i:04d}", text, label, "task_train"))
    (root / "eval").mkdir(parents=True, exist_ok=True)
    train = root / "train.jsonl"
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    evals = [_sni(f"e{i}", review_text(rng, i % 2 == 0), "positive" if i % 2 == 0 else "negative", "task_eval")
             for i in range(8)]
    (root / "eval" / "task_eval.jsonl").write_text("\n".join(evals) + "\n", encoding="utf-8")
    return train, root / "eval"


def append_rows(train: Path, n: int, seed: int = 99) -> None:
    import random

    rng = random.Random(seed)
    extra = [_sni(f"new{i:03d}", review_text(rng, i % 2 == 0), "positive" if i % 2 == 0 else "negative", "task_train")
             for i in range(n)]
    with open(train, "a", encoding="utf-8") as fh:
        fh.write("\n".join(extra) + "\n")
