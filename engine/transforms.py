"""Sentiment-inversion transforms of evaluation queries (the paper's family) and label flip.

Each transform is a pure function of (text, rng); ``make_transformed_sets`` applies them with
a fixed seed to every task's ``original`` query set and registers the results as query sets
``'<task>::<transform>'`` for the influence engine. How often a transform changed the text,
and (given a model) how often it changed the model's prediction, goes to ``transform_stats``;
a transform that changes nothing is marked unusable there and reported, never used silently.
Transforms touch queries only: training data and EK-FAC factors do not depend on them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from engine.errors import UserError
from engine.sentiment import label_polarity
from engine.workspace import Workspace, utc_now

NEGATION_PREFIXES = (
    "Actually, the opposite is true: ",
    "Contrary to what you might think, the opposite holds: ",
    "On the contrary, ",
    "In fact, the reverse is the case: ",
)

# One direction is listed; the map is made symmetric below. Each word appears once so the
# flip is its own inverse (the paper's lexicon was not).
_ANTONYMS = """good bad|great terrible|best worst|better worse|love hate|loved hated|loves hates|
like dislike|liked disliked|happy sad|beautiful ugly|excellent awful|wonderful horrible|
brilliant dull|interesting boring|fun tedious|funny unfunny|enjoyable unbearable|positive negative|
success failure|strong weak|smart stupid|clever dumb|fresh stale|rich poor|pleasant unpleasant|
perfect flawed|amazing dreadful|masterpiece disaster|recommend avoid|always never|moving lifeless|
charming annoying|entertaining tiresome|compelling pointless|delightful painful|superb lousy|
impressive unimpressive|engaging tedium|fascinating mediocre|win lose|easy hard|right wrong|
clear confusing|warm cold|friendly rude|nice mean|safe dangerous|helpful useless|worth worthless"""
ANTONYMS: dict[str, str] = {}
for _pair in _ANTONYMS.replace("\n", "").split("|"):
    _a, _b = _pair.split()
    ANTONYMS[_a], ANTONYMS[_b] = _b, _a

_AUX = re.compile(r"\b(is|was|are|were|has|have|had|will|would|can|could|should|does|do|did)\b(?! not\b)", re.I)
_WORD = re.compile(r"[A-Za-z]+")

Rng = np.random.Generator


def negation_prefix(text: str, rng: Rng) -> str:
    return NEGATION_PREFIXES[int(rng.integers(len(NEGATION_PREFIXES)))] + text


def antonym_flip(text: str, rng: Rng) -> str:
    def swap(m: re.Match[str]) -> str:
        word = m.group(0)
        repl = ANTONYMS.get(word.lower())
        if repl is None:
            return word
        if word.isupper() and len(word) > 1:
            return repl.upper()
        return repl.capitalize() if word[0].isupper() else repl

    return _WORD.sub(swap, text)


def grammatical_negation(text: str, rng: Rng) -> str:
    """'not' after the first auxiliary verb; otherwise wrap the sentence in a negation."""
    out, n = _AUX.subn(lambda m: m.group(0) + " not", text, count=1)
    if n:
        return out
    body = text[:1].lower() + text[1:] if text else text
    return f"It is not the case that {body}"


def question_negation(text: str, rng: Rng) -> str:
    return f"What would be the opposite sentiment of: '{text}'?"


def identity(text: str, rng: Rng) -> str:
    return text


TextTransform = Callable[[str, Rng], str]
TEXT_TRANSFORMS: dict[str, TextTransform] = {
    "negation_prefix": negation_prefix,
    "antonym_flip": antonym_flip,
    "grammatical_negation": grammatical_negation,
    "question_negation": question_negation,
}
# label_flip keeps the text and moves the gold label to its opposite (the measured answer flips)
ALL_TRANSFORMS = (*TEXT_TRANSFORMS, "label_flip")


def flip_label(label: str, label_space: Sequence[str] | None) -> str:
    """The opposite label: the other polarity in a polar space, the other label in a binary one."""
    if not label_space or len(label_space) < 2:
        return label
    pol = label_polarity(label, label_space)
    if pol:
        for other in label_space:
            if label_polarity(other, label_space) == -pol:
                return other
    if len(label_space) == 2:
        return label_space[1] if label == label_space[0] else label_space[0]
    return label


def transform_rows(rows: Sequence[dict], name: str, seed: int) -> list[dict]:
    """Transformed copies of query rows (definition, input, output, label_space, source_uid)."""
    if name not in ALL_TRANSFORMS:
        raise UserError(f"unknown transform {name!r}; choose from {', '.join(ALL_TRANSFORMS)}")
    rng = np.random.default_rng(seed)
    out = []
    for r in rows:
        space = r.get("label_space")
        space_list = json.loads(space) if isinstance(space, str) else space
        if name == "label_flip":
            text, output = r["input"], flip_label(r["output"], space_list)
        else:
            text, output = TEXT_TRANSFORMS[name](r["input"], rng), r["output"]
        out.append(
            {
                "source_uid": r["source_uid"],
                "definition": r["definition"],
                "input": text,
                "output": output,
                "label_space": space_list,
                "changed": int(text != r["input"] or output != r["output"]),
                "_text_changed": text != r["input"],
                "_label_changed": output != r["output"],
            }
        )
    return out


def sample_queries(rows: list[dict], limit: int | None, seed: int) -> list[dict]:
    if limit is None or len(rows) <= limit:
        return rows
    keep = sorted(np.random.default_rng(seed).permutation(len(rows))[:limit].tolist())
    return [rows[i] for i in keep]


def original_queries(ws: Workspace, task: str) -> list[dict]:
    return [
        dict(r)
        for r in ws.conn.execute(
            "SELECT source_uid, definition, input, output, label_space FROM queries "
            "WHERE query_set_id = ? ORDER BY idx",
            (f"{task}::original",),
        )
    ]


def query_tasks(ws: Workspace) -> list[str]:
    return [r[0] for r in ws.conn.execute("SELECT task FROM query_sets WHERE variant = 'original' ORDER BY task")]


def make_transformed_sets(
    ws: Workspace,
    transforms: Sequence[str] = ALL_TRANSFORMS,
    seed: int = 0,
    loaded: Any = None,
    max_queries: int | None = 50,
) -> list[dict]:
    """Register ``<task>::<transform>`` for every task with original queries; record statistics.

    ``loaded``: an ``engine.models.LoadedModel``; when given, the share of queries whose
    predicted label changes under the transform is measured and stored too. ``max_queries``:
    a seeded sample of each task's queries (a set's influence is its queries' mean gradient,
    and the scan's query pass costs time per query).
    """
    from engine.queries import register_query_set

    report = []
    for task in query_tasks(ws):
        base = sample_queries(original_queries(ws, task), max_queries, seed)
        if not base:
            continue
        base_pred = _predict(loaded, base) if loaded is not None else None
        for name in transforms:
            rows = transform_rows(base, name, seed)
            n_text = sum(r["_text_changed"] for r in rows)
            n_label = sum(r["_label_changed"] for r in rows)
            n_pred = None
            if loaded is not None and n_text:
                pred = _predict(loaded, rows)
                n_pred = sum(a != b for a, b in zip(base_pred, pred, strict=True))
            usable = (n_text + n_label) > 0
            note = None if usable else "changed no query: not used"
            set_id = None
            if usable:
                clean = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]
                set_id = register_query_set(ws, task, name, clean, {"transform": name, "seed": seed})
            stat = {
                "query_set_id": f"{task}::{name}", "task": task, "transform": name, "seed": seed,
                "n_queries": len(rows), "n_text_changed": n_text, "n_label_changed": n_label,
                "model_fingerprint": getattr(loaded, "fingerprint", None), "n_pred_changed": n_pred,
                "usable": int(usable), "note": note, "created_at": utc_now(),
            }
            with ws.transaction() as conn:
                conn.execute(
                    f"INSERT OR REPLACE INTO transform_stats ({', '.join(stat)}) "
                    f"VALUES ({', '.join('?' * len(stat))})",
                    tuple(stat.values()),
                )
            stat["registered"] = set_id is not None
            report.append(stat)
    return report


def _predict(loaded: Any, rows: Sequence[dict]) -> list[str]:
    from engine.predict import predict_labels

    return list(predict_labels(loaded, [_as_predict_row(r) for r in rows]))


def _as_predict_row(r: dict) -> dict:
    space = r.get("label_space")
    return {
        "definition": r["definition"],
        "input": r["input"],
        "output": r["output"],
        "label_space": json.loads(space) if isinstance(space, str) else space,
    }


def stats_table(ws: Workspace) -> list[dict]:
    return [dict(r) for r in ws.conn.execute("SELECT * FROM transform_stats ORDER BY task, transform")]


def make_sentiment_guided_sets(ws: Workspace, loaded: Any = None, scorer: str = "vader",
                               max_queries: int | None = 50, seed: int = 0) -> list[str]:
    """Per polar task, the original queries whose sentiment contradicts their answer, as
    ``'<task>::sentiment_mismatch'``. The answer is the model's prediction when a model is
    given (influence then points at what taught it to answer against the sentiment), else the
    gold label. An oracle-free stand-in for triggered queries."""
    from engine.queries import register_query_set
    from engine.sentiment import cached_scores, score_workspace

    score_workspace(ws, scorer)
    sent = cached_scores(ws, scorer)
    made = []
    for task in query_tasks(ws):
        rows = [dict(r) for r in ws.conn.execute(
            "SELECT idx, source_uid, definition, input, output, label_space FROM queries "
            "WHERE query_set_id = ? ORDER BY idx", (f"{task}::original",))]
        if not rows or not rows[0]["label_space"] or label_polarity("", json.loads(rows[0]["label_space"])) is None:
            continue
        answers = _predict(loaded, rows) if loaded is not None else [r["output"] for r in rows]
        picked = []
        for r, answer in zip(rows, answers, strict=True):
            pol = label_polarity(answer, json.loads(r["label_space"]))
            if pol and sent.get(f"{task}::original#{r['idx']}", 0.0) * pol <= -0.05:
                picked.append({**{k: r[k] for k in ("source_uid", "definition", "input", "label_space")},
                               "output": answer, "changed": False})
        picked = sample_queries(picked, max_queries, seed)
        if picked:
            made.append(register_query_set(ws, task, "sentiment_mismatch", picked,
                                           {"scorer": scorer, "answer": "prediction" if loaded else "gold"}))
    return made
