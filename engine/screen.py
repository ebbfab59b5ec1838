"""Scheduled screening: ingest + scan + detect + report, with no terminal and no questions.

Every stage reuses the workspace's caches: an unchanged dataset re-screens from the cached
scores, and a training file with a few new rows scores only those rows. For the latter, the
scores of rows whose content did not change are carried over the training set's replacement
(``carry_scores``), since ingest drops a replaced dataset's derived rows.
"""

from __future__ import annotations

import hashlib
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine import prefilter as pf
from engine import report as rpt
from engine.progress import CancelToken, ProgressFn, no_progress
from engine.sampling import StageClock
from engine.workspace import DB_NAME, Workspace, default_workspace_for

EXIT_CLEAN = 0
EXIT_FLAGGED = 1
EXIT_ERROR = 2

# Tables of per-training-example scores keyed by uid, and the column holding the uid.
_CARRIED = (
    ("influence", "uid", "run_key, query_set_id, query_set_sha256, uid, score"),
    ("self_influence", "uid", "run_key, uid, score"),
    ("sentiment", "key", "key, scorer, score"),
)


@dataclass
class ScreenOptions:
    train: Path
    evals: list[Path]
    model: Path
    report: Path
    workspace: Path | None = None
    fmt: str = "auto"
    eval_format: str = "auto"
    checkpoint: Path | None = None  # score influence at this earlier checkpoint (see engine.pipeline)
    prefilter: pf.PrefilterSettings | None = None
    scorer: str = "vader"

    @property
    def workspace_path(self) -> Path:
        return Path(self.workspace) if self.workspace else default_workspace_for(self.train)


@dataclass
class ScreenResult:
    exit_code: int
    report: dict[str, Any]
    md_path: Path
    json_path: Path
    stage_counts: dict[str, int] = field(default_factory=dict)  # items each progress stage processed


def screen(opts: ScreenOptions, progress: ProgressFn = no_progress, token: CancelToken | None = None) -> ScreenResult:
    from engine.ingest import ingest
    from engine.pipeline import DetectConfig, detect

    started = time.monotonic()
    clock = StageClock(progress)
    ws_path = opts.workspace_path
    ws = Workspace.open(ws_path) if (ws_path / DB_NAME).is_file() else None
    with carry_scores(ws, opts.train):
        ingest(ws if ws is not None else ws_path, opts.train, opts.evals, opts.fmt, eval_format=opts.eval_format,
               replace=True, progress=clock, token=token)
    ws = ws or Workspace.open(ws_path)

    result = detect(ws, opts.model, opts.checkpoint, DetectConfig(scorer=opts.scorer), clock, token,
                    prefilter=opts.prefilter)
    run_key = result["run_key"]
    selection_id = result.get("prefilter_id")
    if opts.prefilter is not None and selection_id is None:  # detection reused unchanged: its selection
        selection_id = (pf.latest(ws, run_key) or {}).get("id")

    settings = {
        "train": str(opts.train), "evals": [str(e) for e in opts.evals], "model": str(opts.model),
        "checkpoint": None if opts.checkpoint is None else str(opts.checkpoint), "format": opts.fmt,
        "prefilter": None if opts.prefilter is None else opts.prefilter.as_dict(), "scorer": opts.scorer,
    }
    counts = {s: clock.done(s) for s in clock.order}
    extra = {
        "settings": settings,
        "cache": {"detect_cached": bool(result["cached"]), "examples_scored_now": clock.done("scores"),
                  "stage_items": counts, "stage_seconds": {s: round(clock.elapsed(s), 2) for s in clock.order}},
        "elapsed_s": round(time.monotonic() - started, 2),
    }
    report = rpt.build(ws, run_key=run_key, prefilter_id=selection_id, extra=extra)
    md_path, json_path = rpt.write(report, opts.report)
    code = EXIT_FLAGGED if report["counts"]["flagged"] else EXIT_CLEAN
    return ScreenResult(code, report, md_path, json_path, counts)


# ------------------------------------------------------------------------- score carry-over
@contextmanager
def carry_scores(ws: Workspace | None, train: Path) -> Iterator[None]:
    """Keep the cached scores of training rows whose content survives a replacement of the set.

    Ingest replaces a changed training file wholesale and drops its rows' scores. Rows keep
    their uid across files (by record id, else by content), so the scores of every row whose
    content hash is unchanged are snapshotted to temporary tables first and restored after,
    and only the new or edited rows are left to score. Skipped when the file is unchanged.
    """
    if ws is None or _unchanged(ws, train):
        yield
        return
    conn = ws.conn
    for table, col, cols in _CARRIED:
        conn.execute(f"DROP TABLE IF EXISTS temp.carry_{table}")
        conn.execute(
            f"CREATE TEMP TABLE carry_{table} AS SELECT {', '.join('t.' + c for c in cols.split(', '))}, "
            f"e.content_sha256 AS carried_sha FROM {table} t JOIN examples e ON e.uid = t.{col} "
            "WHERE e.role = 'train'"
        )
    try:
        yield
        with ws.transaction() as tx:
            for table, col, cols in _CARRIED:
                tx.execute(
                    f"INSERT OR IGNORE INTO {table} ({cols}) SELECT {cols} FROM temp.carry_{table} c "
                    f"WHERE EXISTS (SELECT 1 FROM examples e WHERE e.uid = c.{col} "
                    "AND e.content_sha256 = c.carried_sha AND e.role = 'train')"
                )
    finally:
        for table, _, _ in _CARRIED:
            conn.execute(f"DROP TABLE IF EXISTS temp.carry_{table}")


def _unchanged(ws: Workspace, train: Path) -> bool:
    try:
        row = ws.conn.execute("SELECT sha256 FROM datasets WHERE role = 'train'").fetchone()
    except sqlite3.Error:
        return False
    if row is None:
        return True  # nothing to carry
    train = Path(train)
    if not train.is_file():
        return False  # a datasets directory: let ingest decide, carry to be safe
    h = hashlib.sha256()
    with open(train, "rb") as fh:
        while block := fh.read(1 << 22):
            h.update(block)
    return h.hexdigest() == row[0]
