"""TF-IDF candidate selection: score influence only for the training examples that look like
the queries (Grosse et al. 2023, used by Li 2025 to make influence affordable).

For each query set, every training example gets the TF-IDF cosine similarity between its text
and the set's queries (averaged over the queries, or their maximum); the candidates are the
union over query sets of the top ``K`` examples (or the top fraction). The engine then scores
only those (``scan(..., uids=candidates)``); the others have no influence row, and everything
downstream must say "not scored", never treat them as clean.

Rank against every registered query set, triggered ones included: a set that carries a
suspected trigger phrase pulls that phrase's carriers to the top (rare words weigh most in
TF-IDF), which the tasks' own queries cannot do; ``engine.pipeline.detect`` therefore selects
after it has registered its query sets. With such a set, the mean over a set's queries kept
more poisons per share of data than the maximum (bench/prefilter.py: 94 % of the poisons in
7 % of the data at K=0.02, against 56 % in 9 %), hence the default.

The selection is recorded in ``prefilter_runs`` / ``prefilter_candidates`` so that the report
and the UI can say how many examples were skipped and why a candidate was kept.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from engine.errors import UserError
from engine.prompts import DEFAULT_FORMAT
from engine.workspace import Workspace, utc_now

AGGREGATES = ("mean", "max")


@dataclass(frozen=True)
class PrefilterSettings:
    """``candidates``: an int K (top K per query set) or a fraction in (0, 1] of the training set."""

    candidates: int | float
    aggregate: str = "mean"  # how a training example's similarities to one set's queries combine
    method: str = "tfidf"

    def __post_init__(self) -> None:
        c = self.candidates
        if isinstance(c, bool) or not isinstance(c, (int, float)):
            raise UserError(f"--candidates must be a count or a fraction, not {c!r}")
        if isinstance(c, int) and c < 1:
            raise UserError(f"--candidates must be at least 1, not {c}")
        if isinstance(c, float) and not 0.0 < c <= 1.0:
            raise UserError(f"--candidates as a fraction must be in (0, 1], not {c}")
        if self.aggregate not in AGGREGATES:
            raise UserError(f"prefilter aggregate must be one of {', '.join(AGGREGATES)}, not {self.aggregate!r}")
        if self.method != "tfidf":
            raise UserError(f"unknown prefilter {self.method!r}; the only one is 'tfidf'")

    def per_set(self, n_train: int) -> int:
        """How many examples each query set keeps."""
        if isinstance(self.candidates, float):
            return min(n_train, max(1, math.ceil(self.candidates * n_train)))
        return min(n_train, self.candidates)

    def as_dict(self) -> dict[str, object]:
        return {"method": self.method, "candidates": self.candidates, "aggregate": self.aggregate}


def parse_candidates(text: str) -> int | float:
    """``"500"`` -> 500 per query set; ``"0.1"`` or ``"10%"`` -> a tenth of the training set."""
    raw = text.strip()
    try:
        if raw.endswith("%"):
            value: int | float = float(raw[:-1]) / 100.0
        elif raw.isdigit():
            value = int(raw)
        else:
            value = float(raw)
            if value >= 1.0 and value.is_integer():
                value = int(value)  # "500.0" means 500
    except ValueError:
        raise UserError(f"--candidates {text!r}: expected a count (500), a fraction (0.1) or a percentage (10%)") from None
    if isinstance(value, float) and not math.isfinite(value):
        raise UserError(f"--candidates {text!r}: not a finite number")
    PrefilterSettings(value)  # validates the range
    return value


@dataclass
class Selection:
    settings: PrefilterSettings
    train_uids: list[str]  # every training uid, in ingestion order
    uids: list[str]  # the candidates (union over query sets), in ingestion order
    per_set: dict[str, list[str]]  # query set id -> its top uids, most similar first
    # uid -> (query set where it ranked best, that rank (1 = most similar), its similarity there)
    best: dict[str, tuple[str, int, float]] = field(default_factory=dict)
    train_sha256: str = ""  # over the training uids and their content hashes

    @property
    def n_train(self) -> int:
        return len(self.train_uids)

    @property
    def n_skipped(self) -> int:
        return self.n_train - len(self.uids)


def model_text(definition: str, input: str, output: str) -> str:
    # The text the model trains on (prompt + answer), so similarity follows what the loss sees.
    return DEFAULT_FORMAT.prompt(definition, input) + DEFAULT_FORMAT.answer(output)


def similarity_matrix(
    train_texts: Sequence[str], query_sets: Sequence[Sequence[str]], aggregate: str = "mean"
) -> np.ndarray:
    """``[n_sets, n_train]`` TF-IDF cosine similarity of each training text to each query set.

    The vocabulary and IDF come from the training texts (the corpus being filtered), so a word
    that appears only in the queries carries no weight, as it cannot separate training rows.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    if aggregate not in AGGREGATES:
        raise ValueError(f"aggregate must be one of {AGGREGATES}")
    out = np.zeros((len(query_sets), len(train_texts)), dtype=np.float64)
    if not train_texts or not query_sets:
        return out
    vectorizer = TfidfVectorizer(sublinear_tf=True, dtype=np.float64)
    try:
        train = vectorizer.fit_transform(train_texts)  # rows are L2-normalised
    except ValueError:  # every training text is empty or stop words only: nothing is similar
        return out
    for i, texts in enumerate(query_sets):
        if not texts:
            continue
        queries = vectorizer.transform(list(texts))
        if aggregate == "mean":
            # mean over queries of cos(x, q_j) = x . mean_j(q_j): one sparse mat-vec
            centroid = np.asarray(queries.mean(axis=0)).ravel()
            out[i] = train @ centroid
        else:
            sims = (train @ queries.T).tocsr()
            out[i] = sims.max(axis=1).toarray().ravel()
    return out


def top_k(similarity: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest values, largest first; ties broken by position (stable)."""
    order = np.argsort(-similarity, kind="stable")
    return order[:k]


def select(ws: Workspace, settings: PrefilterSettings, query_set_ids: Sequence[str] | None = None) -> Selection:
    """Rank the workspace's training examples against its query sets (reads only)."""
    conn = ws.conn
    train = conn.execute(
        "SELECT uid, definition, input, output, content_sha256 FROM examples WHERE role = 'train' "
        "ORDER BY dataset_id, ordinal"
    ).fetchall()
    if not train:
        raise UserError(f"{ws.path}: no training examples to prefilter; ingest a training set first")
    if query_set_ids is None:
        query_set_ids = [r[0] for r in conn.execute("SELECT id FROM query_sets ORDER BY id")]
    if not query_set_ids:
        raise UserError(f"{ws.path}: no query sets to prefilter against; ingest evaluation tasks with --eval")
    query_texts: list[list[str]] = []
    for qid in query_set_ids:
        rows = conn.execute(
            "SELECT definition, input, output FROM queries WHERE query_set_id = ? ORDER BY idx", (qid,)
        ).fetchall()
        if not rows:
            raise UserError(f"query set {qid!r} has no queries (unknown id, or empty)")
        query_texts.append([model_text(*r) for r in rows])

    uids = [r[0] for r in train]
    fingerprint = hashlib.sha256("".join(f"{r[0]}\x1f{r[4]}\n" for r in train).encode()).hexdigest()
    sims = similarity_matrix([model_text(r[1], r[2], r[3]) for r in train], query_texts, settings.aggregate)
    k = settings.per_set(len(uids))
    per_set: dict[str, list[str]] = {}
    best: dict[str, tuple[str, int, float]] = {}
    for qid, row in zip(query_set_ids, sims, strict=True):
        top = top_k(row, k)
        per_set[qid] = [uids[j] for j in top]
        for rank, j in enumerate(top, start=1):
            uid = uids[j]
            if uid not in best or rank < best[uid][1]:
                best[uid] = (qid, rank, float(row[j]))
    chosen = [u for u in uids if u in best]
    return Selection(settings, uids, chosen, per_set, best, fingerprint)


def record(ws: Workspace, selection: Selection, run_key: str | None = None) -> int:
    """Store the selection (one transaction); returns its ``prefilter_runs`` id."""
    counts = {qid: len(u) for qid, u in selection.per_set.items()}
    with ws.transaction() as conn:
        cur = conn.execute(
            "INSERT INTO prefilter_runs (method, params, train_sha256, n_train, n_candidates, per_set, "
            "run_key, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                selection.settings.method, json.dumps(selection.settings.as_dict(), sort_keys=True),
                selection.train_sha256, selection.n_train, len(selection.uids), json.dumps(counts, sort_keys=True),
                run_key, utc_now(),
            ),
        )
        pid = int(cur.lastrowid)
        conn.executemany(
            "INSERT INTO prefilter_candidates (prefilter_id, uid, query_set_id, rank, similarity) "
            "VALUES (?, ?, ?, ?, ?)",
            [(pid, uid, *selection.best[uid]) for uid in selection.uids],
        )
    return pid


def choose(ws: Workspace, settings: PrefilterSettings, within: Sequence[str] | None = None) -> tuple[list[str], int]:
    """Select and record the candidates against every registered query set; returns (uids, record id).

    ``within``: keep only candidates among these uids (a trial sample drawn beforehand).
    """
    selection = select(ws, settings)
    pid = record(ws, selection)
    if within is None:
        return selection.uids, pid
    keep = set(within)
    return [u for u in selection.uids if u in keep], pid


def attach_run(ws: Workspace, prefilter_id: int, run_key: str) -> None:
    """Name the scan that used a recorded selection (known only once the scan has started)."""
    with ws.transaction() as conn:
        conn.execute("UPDATE prefilter_runs SET run_key = ? WHERE id = ?", (run_key, prefilter_id))


def latest(ws: Workspace, run_key: str | None = None) -> dict[str, object] | None:
    """The most recent recorded selection (for ``run_key`` when given), as a plain dict."""
    sql, args = "SELECT id FROM prefilter_runs", ()
    if run_key is not None:
        sql, args = sql + " WHERE run_key = ?", (run_key,)
    row = ws.conn.execute(sql + " ORDER BY id DESC LIMIT 1", args).fetchone()
    return None if row is None else get(ws, row[0])


def get(ws: Workspace, prefilter_id: int) -> dict[str, object] | None:
    """A recorded selection's settings and counts (not its candidates), as a plain dict."""
    row = ws.conn.execute("SELECT * FROM prefilter_runs WHERE id = ?", (prefilter_id,)).fetchone()
    if row is None:
        return None
    out = dict(row)
    out["params"] = json.loads(out["params"])
    out["per_set"] = json.loads(out["per_set"])
    return out


def _coverage(ws: Workspace, run_key: str) -> tuple[list[tuple[str, int]], int]:
    """(training uid, how many current query sets it has a score for), and how many sets the run covers.

    Only rows scored against the current version of a query set count (a changed set's old
    rows are stale).
    """
    conn = ws.conn
    current = (
        "SELECT i.uid FROM influence i JOIN query_sets q ON q.id = i.query_set_id AND q.sha256 = i.query_set_sha256 "
        "WHERE i.run_key = ?"
    )
    n_sets = conn.execute(
        "SELECT COUNT(DISTINCT i.query_set_id) FROM influence i JOIN query_sets q ON q.id = i.query_set_id "
        "AND q.sha256 = i.query_set_sha256 WHERE i.run_key = ?", (run_key,)
    ).fetchone()[0]
    rows = conn.execute(
        f"SELECT e.uid, COALESCE(c.n, 0) FROM examples e LEFT JOIN (SELECT uid, COUNT(*) AS n FROM ({current}) "
        "GROUP BY uid) c ON c.uid = e.uid WHERE e.role = 'train' ORDER BY e.dataset_id, e.ordinal",
        (run_key,),
    ).fetchall()
    return [(r[0], r[1]) for r in rows], n_sets


def scored_train_uids(ws: Workspace, run_key: str) -> list[str]:
    """Training uids with an influence score for every query set of ``run_key``, in ingestion order."""
    rows, n_sets = _coverage(ws, run_key)
    return [u for u, n in rows if n_sets and n >= n_sets]


def unscored_train_uids(ws: Workspace, run_key: str) -> list[str]:
    """Training uids that lack an influence score for at least one query set of ``run_key``.

    This is read from the scores themselves, not from the prefilter record, so whatever the
    reason (prefiltered out, a trial sample, an appended row not yet scanned) they show up.
    """
    rows, n_sets = _coverage(ws, run_key)
    return [u for u, n in rows if not n_sets or n < n_sets]
