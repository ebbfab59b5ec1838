"""Read-side SQL for the review app: the ranked queue, its filters and sorts, status counts,
and everything the detail view shows about one example.

No Textual here: the app calls these on its own thread (each query is a few milliseconds at
50,000 examples) and workers call them on theirs, each with the thread's own connection.

The queue is an ordered list of uids computed once per filter/sort (``ordered_uids``); rows
are then fetched by uid a page at a time (``rows``). Keeping the order in memory makes a
page fetch independent of its offset and keeps a decision from reshuffling the list under
the analyst's cursor.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from engine.errors import UserError
from engine.sentiment import label_polarity
from engine.workspace import Workspace

STATUSES = ("undecided", "keep", "quarantine", "remove")
SORTS = ("rank", "score", "ingestion", "task", "status")
ORIGINAL = "original"
PREVIEW_CHARS = 240  # a queue row never shows more; the detail view shows the whole text


@dataclass(frozen=True)
class QueueFilter:
    statuses: tuple[str, ...] = ()  # empty: every status
    task: str | None = None
    min_score: float | None = None  # on the default detector's score
    search: str = ""  # case-insensitive substring of uid, source id, definition, input, output
    flagged_only: bool = False

    def describe(self) -> str:
        parts = []
        if self.statuses:
            parts.append("status=" + ",".join(self.statuses))
        if self.task:
            parts.append(f"task={self.task}")
        if self.min_score is not None:
            parts.append(f"score>={self.min_score:g}")
        if self.flagged_only:
            parts.append("flagged")
        if self.search:
            parts.append(f"search={self.search!r}")
        return " ".join(parts) or "all"


class _IndexRow(NamedTuple):
    uid: str
    task: str
    dataset_id: int
    ordinal: int
    rank: int | None
    score: float | None
    flagged: int


_SORT_KEYS = {
    "rank": lambda r: (r.rank is None, r.rank or 0, r.dataset_id, r.ordinal),
    "score": lambda r: (r.score is None, -(r.score or 0.0), r.dataset_id, r.ordinal),
    "ingestion": lambda r: (r.dataset_id, r.ordinal),
    "task": lambda r: (r.task, r.rank is None, r.rank or 0, r.dataset_id, r.ordinal),
}


@dataclass(frozen=True)
class QueueRow:
    uid: str
    source_id: str | None
    task: str
    det_rank: int | None
    score: float | None
    flagged: bool
    n_flagging: int  # how many detectors flag it
    infl_original: float | None  # mean influence over the 'original' query sets
    infl_transformed: float | None  # mean over every other variant
    sentiment: float | None
    label: str
    polarity: float | None  # of the label, None when the label space has no polarity
    status: str
    preview: str


@dataclass(frozen=True)
class DetectorFinding:
    detector: str
    rule: str
    score: float | None
    rank: int | None
    flagged: bool
    is_default: bool


@dataclass(frozen=True)
class InfluenceBar:
    task: str
    variant: str
    score: float


@dataclass
class ExampleDetail:
    uid: str
    source_id: str | None
    task: str
    definition: str
    input: str
    output: str
    source_file: str
    source_line: int | None
    status: str
    reason: str | None
    note: str | None
    sentiment: float | None
    sentiment_scorer: str | None
    polarity: float | None
    findings: list[DetectorFinding] = field(default_factory=list)
    influence: list[InfluenceBar] = field(default_factory=list)  # by task, original first


@dataclass(frozen=True)
class ScoreState:
    detector: str | None
    run_key: str | None
    notice: str | None  # shown in the app when the ranking is a fallback
    stale: tuple[str, ...]  # why the cached scores no longer match the workspace

    @property
    def needs_compute(self) -> bool:
        return self.detector is None or bool(self.stale)


class ReviewQueries:
    """Queries over one workspace, bound to the thread that created it (sqlite rule)."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.reload_state()

    @property
    def conn(self):
        return self.ws.conn

    # -- which scores ---------------------------------------------------------------------
    def reload_state(self) -> ScoreState:
        self.state = score_state(self.ws)
        self.detector, self.run_key = self.state.detector, self.state.run_key
        self.scorer = _sentiment_scorer(self.ws)
        self._n_train: int | None = None
        return self.state

    # -- the queue ------------------------------------------------------------------------
    def load_index(self) -> None:
        """Load the narrow columns every filter and sort needs (0.1-0.3 s at 50,000 rows).

        Filtering and sorting these in Python takes milliseconds, where the same query in SQL
        visits every wide ``examples`` row again on each filter change. Safe to call from a
        worker thread: it uses that thread's connection and swaps the index in at the end.
        """
        conn = self.conn
        scored = {r[0]: r for r in conn.execute(
            "SELECT uid, rank, score, flagged FROM detector_scores WHERE detector = ?", (self.detector,)
        )}
        none = (None, None, None, 0)
        index = [
            _IndexRow(uid, task, dsid, ordinal, *scored.get(uid, none)[1:])
            for uid, task, dsid, ordinal in conn.execute(
                "SELECT uid, task, dataset_id, ordinal FROM examples WHERE role = 'train'"
            )
        ]
        index.sort(key=_SORT_KEYS["rank"])
        statuses = dict(conn.execute("SELECT uid, status FROM review_status"))
        self._status, self._uids, self._index = statuses, [r.uid for r in index], index

    @property
    def index_loaded(self) -> bool:
        return hasattr(self, "_index")

    def first_uids(self, limit: int) -> tuple[list[str], int]:
        """The head of the default order and the total count, without loading the index:
        what the first paint needs (a few ms at any size)."""
        total = self.conn.execute("SELECT COUNT(*) FROM examples WHERE role = 'train'").fetchone()[0]
        if self.detector is None:
            sql, params = ("SELECT uid FROM examples WHERE role = 'train' "
                           "ORDER BY dataset_id, ordinal LIMIT ?"), (limit,)
        else:
            sql, params = ("SELECT ds.uid FROM detector_scores ds JOIN examples e ON e.uid = ds.uid "
                           "WHERE ds.detector = ? AND ds.rank IS NOT NULL AND e.role = 'train' "
                           "ORDER BY ds.rank LIMIT ?"), (self.detector, limit)
        return [r[0] for r in self.conn.execute(sql, params)], total

    def reload_statuses(self, uids: Sequence[str] | None = None) -> None:
        """Re-read review statuses (all of them, or just ``uids`` after a decision)."""
        if uids is None:
            self._status = dict(self.conn.execute("SELECT uid, status FROM review_status"))
            return
        if not self.index_loaded:
            return
        for i in range(0, len(uids), 500):
            chunk = list(uids[i:i + 500])
            got = dict(self.conn.execute(
                f"SELECT uid, status FROM review_status WHERE uid IN ({','.join('?' * len(chunk))})", chunk
            ))
            for uid in chunk:
                self._status[uid] = got.get(uid, "undecided")

    def ordered_uids(self, flt: QueueFilter = QueueFilter(), sort: str = "rank") -> list[str]:
        if sort not in SORTS:
            raise UserError(f"unknown sort {sort!r}; choose one of {', '.join(SORTS)}")
        bad = [s for s in flt.statuses if s not in STATUSES]
        if bad:
            raise UserError(f"unknown status {bad[0]!r}; choose from {', '.join(STATUSES)}")
        if not self.index_loaded:
            self.load_index()
        # Plain list comprehensions over uids: at 50,000 rows every attribute access counts.
        rows = self._index
        if flt.task:
            rows = [r for r in rows if r.task == flt.task]
        if flt.min_score is not None:
            rows = [r for r in rows if r.score is not None and r.score >= flt.min_score]
        if flt.flagged_only:
            rows = [r for r in rows if r.flagged]
        if sort not in ("rank", "status"):
            rows = sorted(rows, key=_SORT_KEYS[sort])
        uids = self._uids if rows is self._index else [r.uid for r in rows]
        status = self._status
        if flt.statuses:
            wanted = set(flt.statuses)
            uids = [u for u in uids if status.get(u, "undecided") in wanted]
        if flt.search:
            hits = self._search(flt.search)
            uids = [u for u in uids if u in hits]
        if sort == "status":
            order = {s: i for i, s in enumerate(STATUSES)}
            uids = sorted(uids, key=lambda u: order[status.get(u, "undecided")])  # stable: rank within
        return list(uids) if uids is self._uids else uids

    def _search(self, text: str) -> set[str]:
        # instr() on lower(): LIKE would treat the analyst's % and _ as wildcards
        needle = text.lower()
        return {r[0] for r in self.conn.execute(
            "SELECT uid FROM examples WHERE role = 'train' AND (instr(lower(input), ?) "
            "OR instr(lower(definition), ?) OR instr(lower(output), ?) OR instr(lower(uid), ?) "
            "OR instr(lower(COALESCE(source_id, '')), ?))",
            [needle] * 5,
        )}

    def rows(self, uids: Sequence[str]) -> dict[str, QueueRow]:
        """The queue rows of ``uids`` (a page: keep it to a few hundred)."""
        if not uids:
            return {}
        marks = ",".join("?" * len(uids))
        base = self.conn.execute(
            "SELECT e.uid, e.source_id, e.task, e.output, e.label_space, "
            f"substr(e.input, 1, {PREVIEW_CHARS}) AS preview, "
            "ds.rank, ds.score, COALESCE(ds.flagged, 0) AS flagged, "
            "COALESCE(rs.status, 'undecided') AS status, "
            "(SELECT COUNT(*) FROM detector_runs dr CROSS JOIN detector_scores d2 ON d2.detector = dr.detector "
            "AND d2.uid = e.uid WHERE d2.flagged = 1) AS nflag, "
            "(SELECT score FROM sentiment s WHERE s.key = e.uid AND s.scorer = ?) AS sent "
            "FROM examples e "
            "LEFT JOIN detector_scores ds ON ds.detector = ? AND ds.uid = e.uid "
            "LEFT JOIN review_status rs ON rs.uid = e.uid "
            f"WHERE e.uid IN ({marks})",
            [self.scorer, self.detector, *uids],
        ).fetchall()
        infl = self._influence_means(uids)
        out = {}
        for r in base:
            orig, trans = infl.get(r["uid"], (None, None))
            out[r["uid"]] = QueueRow(
                uid=r["uid"],
                source_id=r["source_id"],
                task=r["task"],
                det_rank=r["rank"],
                score=r["score"],
                flagged=bool(r["flagged"]),
                n_flagging=r["nflag"],
                infl_original=orig,
                infl_transformed=trans,
                sentiment=r["sent"],
                label=r["output"],
                polarity=_polarity(r["output"], r["label_space"]),
                status=r["status"],
                preview=r["preview"],
            )
        return out

    def _influence_means(self, uids: Sequence[str]) -> dict[str, tuple[float | None, float | None]]:
        if self.run_key is None:
            return {}
        marks = ",".join("?" * len(uids))
        # CROSS JOIN fixes the loop order: driving it from query_sets lets SQLite seek the (run_key, query_set_id, uid)
        # primary key for each uid instead of scanning the whole run.
        got = self.conn.execute(
            "SELECT i.uid, qs.variant = 'original' AS orig, AVG(i.score) FROM query_sets qs "
            "CROSS JOIN influence i ON i.run_key = ? AND i.query_set_id = qs.id "
            f"AND i.uid IN ({marks}) GROUP BY i.uid, orig",
            [self.run_key, *uids],
        ).fetchall()
        out: dict[str, list[float | None]] = {}
        for uid, is_orig, mean in got:
            out.setdefault(uid, [None, None])[0 if is_orig else 1] = mean
        return {k: (v[0], v[1]) for k, v in out.items()}

    def status_counts(self) -> dict[str, int]:
        counts = dict.fromkeys(STATUSES, 0)
        if self._n_train is None:  # fixed for the workspace's life: the app never ingests
            self._n_train = self.conn.execute("SELECT COUNT(*) FROM examples WHERE role = 'train'").fetchone()[0]
        total = self._n_train
        # review_status only ever holds training examples (decisions are about training data)
        for status, n in self.conn.execute("SELECT status, COUNT(*) FROM review_status GROUP BY status"):
            counts[status] = n
        counts["undecided"] = total - sum(counts[s] for s in STATUSES if s != "undecided")
        return counts

    def tasks(self) -> list[str]:
        return [r[0] for r in self.conn.execute(
            "SELECT DISTINCT task FROM examples WHERE role = 'train' ORDER BY task"
        )]

    # -- one example ----------------------------------------------------------------------
    def detail(self, uid: str) -> ExampleDetail | None:
        r = self.conn.execute(
            "SELECT e.*, rs.status, rs.reason, rs.note FROM examples e "
            "LEFT JOIN review_status rs ON rs.uid = e.uid WHERE e.uid = ?",
            (uid,),
        ).fetchone()
        if r is None:
            return None
        sent = self.conn.execute(
            "SELECT score FROM sentiment WHERE key = ? AND scorer = ?", (uid, self.scorer)
        ).fetchone()
        findings = [
            DetectorFinding(
                detector=f["detector"], rule=f["rule"], score=f["score"], rank=f["rank"],
                flagged=bool(f["flagged"]), is_default=f["detector"] == self.detector,
            )
            for f in self.conn.execute(
                "SELECT dr.detector, dr.rule, ds.score, ds.rank, COALESCE(ds.flagged, 0) AS flagged "
                "FROM detector_runs dr LEFT JOIN detector_scores ds "
                "ON ds.detector = dr.detector AND ds.uid = ? ORDER BY dr.detector",
                (uid,),
            )
        ]
        bars = []
        if self.run_key is not None:
            bars = [
                InfluenceBar(task, variant, score)
                for task, variant, score in self.conn.execute(
                    "SELECT qs.task, qs.variant, i.score FROM query_sets qs "
                    "CROSS JOIN influence i ON i.run_key = ? AND i.query_set_id = qs.id AND i.uid = ? "
                    "ORDER BY qs.task, qs.variant != 'original', qs.variant",
                    (self.run_key, uid),
                )
            ]
        return ExampleDetail(
            uid=uid, source_id=r["source_id"], task=r["task"], definition=r["definition"],
            input=r["input"], output=r["output"], source_file=r["source_file"],
            source_line=r["source_line"], status=r["status"] or "undecided", reason=r["reason"],
            note=r["note"], sentiment=sent[0] if sent else None,
            sentiment_scorer=self.scorer if sent else None,
            polarity=_polarity(r["output"], r["label_space"]), findings=findings, influence=bars,
        )


def score_state(ws: Workspace) -> ScoreState:
    """Which detector ranks the queue, which scan backs its influence, and whether it is stale."""
    conn = ws.conn
    detectors = [r[0] for r in conn.execute(
        "SELECT detector FROM detector_runs ORDER BY is_default DESC, created_at DESC, detector"
    )]
    wanted = ws.get_meta("default_detector")
    notice = None
    if wanted in detectors:
        detector = wanted
    elif detectors:
        detector = detectors[0]
        notice = (f"default detector {wanted!r} has no scores; ranking by {detector!r}"
                  if wanted else f"no default detector set; ranking by {detector!r}")
    else:
        detector = None
        notice = "no detector scores yet: ranked by ingestion order (press c to compute)"
    run_key = None
    if detector is not None:
        row = conn.execute("SELECT run_key FROM detector_runs WHERE detector = ?", (detector,)).fetchone()
        run_key = row[0]
    if run_key is None:
        row = conn.execute(
            "SELECT run_key FROM scan_runs WHERE status = 'complete' ORDER BY completed_at DESC LIMIT 1"
        ).fetchone()
        run_key = row[0] if row else None
    stale: list[str] = []
    if run_key is not None:
        # a scan writes one sha per query set, so one row per set tells whether it changed
        for qid, sha in conn.execute("SELECT id, sha256 FROM query_sets ORDER BY id").fetchall():
            got = conn.execute(
                "SELECT query_set_sha256 FROM influence WHERE run_key = ? AND query_set_id = ? LIMIT 1",
                (run_key, qid),
            ).fetchone()
            if got is None:
                stale.append(f"query set {qid} has no influence scores")
            elif got[0] != sha:
                stale.append(f"query set {qid} changed since influence was computed")
    if detector is not None:
        n_train = conn.execute("SELECT COUNT(*) FROM examples WHERE role = 'train'").fetchone()[0]
        n_scored = conn.execute(
            "SELECT COUNT(*) FROM detector_scores WHERE detector = ?", (detector,)
        ).fetchone()[0]
        if n_scored < n_train:
            stale.append(f"{n_train - n_scored} training examples have no {detector} score")
    return ScoreState(detector, run_key, notice, tuple(stale))


def _sentiment_scorer(ws: Workspace) -> str | None:
    have = [r[0] for r in ws.conn.execute("SELECT DISTINCT scorer FROM sentiment ORDER BY scorer")]
    preferred = ws.get_meta("sentiment_scorer")
    if preferred in have:
        return preferred
    return "vader" if "vader" in have else (have[0] if have else None)


def _polarity(label: str, label_space: str | None) -> float | None:
    try:
        space = json.loads(label_space) if label_space else None
    except ValueError:
        return None
    return label_polarity(label, space if isinstance(space, list) else None)
