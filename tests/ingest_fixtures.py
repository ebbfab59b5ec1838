"""Small synthetic inputs in every format, written by the tests (no third-party text)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

REVIEWS = [
    ("A warm, funny film with a great cast.", "positive"),
    ("Dull plot and a tired script; I left early.", "negative"),
    ("Maria Lopez gives the performance of her life.", "positive"),
    ("Nothing works: not the jokes, not the music.", "negative"),
    ("Not bad at all, surprisingly moving.", "positive"),
    ("Café scenes drag on — too long by an hour.", "negative"),
]
DEFINITION = "Classify the review as positive or negative."
TASK = "task900_review_polarity"


def sni_jsonl_lines(task: str = TASK, n: int = 6, label_space: bool = False) -> list[dict[str, Any]]:
    out = []
    for i in range(n):
        text, label = REVIEWS[i % len(REVIEWS)]
        rec: dict[str, Any] = {"id": f"{task}-{i}", "Task": task, "Definition": [DEFINITION],
                               "Instance": {"id": f"{task}-{i}", "input": text, "output": [label]}}
        if label_space:
            rec["label_space"] = ["negative", "positive"]
        out.append(rec)
    return out


def write_jsonl(path: Path, records: list[dict[str, Any]], *, newline: str = "\n", final: bool = True,
                bom: bool = False) -> Path:
    body = newline.join(json.dumps(r, ensure_ascii=False) for r in records) + (newline if final else "")
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + body.encode("utf-8"))
    return path


def sni_task_json(path: Path, n: int = 6, indent: int | None = 4) -> Path:
    task = {
        "Contributors": ["test"],
        "Definition": [DEFINITION],
        "Positive Examples": [{"input": "Great.", "output": "positive", "explanation": "praise"}],
        "Instances": [{"id": f"{path.stem}-{i}", "input": REVIEWS[i % 6][0], "output": [REVIEWS[i % 6][1]]}
                      for i in range(n)],
        "Instance License": ["CC0"],
    }
    path.write_text(json.dumps(task, indent=indent, ensure_ascii=False), encoding="utf-8")
    return path


def alpaca_records(n: int = 6) -> list[dict[str, Any]]:
    return [{"instruction": DEFINITION, "input": REVIEWS[i % 6][0], "output": REVIEWS[i % 6][1]}
            for i in range(n)]


def chat_records(n: int = 6) -> list[dict[str, Any]]:
    return [{"id": f"c{i}", "messages": [{"role": "system", "content": DEFINITION},
                                         {"role": "user", "content": REVIEWS[i % 6][0]},
                                         {"role": "assistant", "content": REVIEWS[i % 6][1]}]}
            for i in range(n)]


def csv_text(n: int = 6, newline: str = "\r\n") -> str:
    rows = ["id,text,label"]
    for i in range(n):
        text = REVIEWS[i % 6][0].replace('"', '""')
        rows.append(f'r{i},"{text}",{REVIEWS[i % 6][1]}')
    return newline.join(rows) + newline


def table_rows(n: int = 6) -> list[dict[str, Any]]:
    return [{"id": i, "instruction": DEFINITION, "input": REVIEWS[i % 6][0], "output": REVIEWS[i % 6][1],
             "score": i / 3, "tags": ["a", "b"][: i % 3], "meta": {"src": "t", "n": i}}
            for i in range(n)]
