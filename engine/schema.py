"""The workspace database schema, as an append-only list of migrations.

``PRAGMA user_version`` records how many migrations ran. To change the schema, append a
new migration to ``MIGRATIONS``; never edit one that has shipped, because workspaces in
the field already ran it.
"""

from __future__ import annotations

import sqlite3

# Migration 1: the whole core schema. Every table is written by exactly one engine module
# (named in the comment) and read by any.
_V1 = """
-- engine.ingest: one row per ingested file (or folder / datasets directory)
CREATE TABLE datasets (
    id INTEGER PRIMARY KEY,
    role TEXT NOT NULL CHECK (role IN ('train', 'eval')),
    path TEXT NOT NULL,
    format TEXT NOT NULL,
    sha256 TEXT NOT NULL,
    n_records INTEGER NOT NULL,
    options TEXT NOT NULL DEFAULT '{}',   -- JSON: encoding, csv mapping, lenient, ...
    layout TEXT NOT NULL DEFAULT '{}',    -- JSON: what export needs to rebuild the file (framing)
    ingested_at TEXT NOT NULL
);

-- engine.ingest: canonical examples, training rows and evaluation queries alike
CREATE TABLE examples (
    uid TEXT PRIMARY KEY,                 -- stable across re-ingestion of the same file
    dataset_id INTEGER NOT NULL REFERENCES datasets(id),
    ordinal INTEGER NOT NULL,             -- 0-based position in the source
    role TEXT NOT NULL CHECK (role IN ('train', 'eval')),
    source_id TEXT,                       -- the record's own id, if it has one
    task TEXT NOT NULL,
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,
    label_space TEXT,                     -- JSON list for classification tasks, else NULL
    source_file TEXT NOT NULL,
    source_line INTEGER,                  -- 1-based; NULL where the format has no lines
    raw BLOB NOT NULL,                    -- the original record's exact bytes
    content_sha256 TEXT NOT NULL          -- sha256 of raw
);
CREATE INDEX examples_role_task ON examples (role, task);
CREATE INDEX examples_dataset ON examples (dataset_id, ordinal);

-- engine.queries: a query set is (evaluation task x variant); 'original' is made at ingest
CREATE TABLE query_sets (
    id TEXT PRIMARY KEY,                  -- '<task>::<variant>'
    task TEXT NOT NULL,
    variant TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    sha256 TEXT NOT NULL,                 -- content hash of its queries, for the score cache key
    n_queries INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE queries (
    query_set_id TEXT NOT NULL REFERENCES query_sets(id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    source_uid TEXT NOT NULL,             -- the evaluation example it derives from
    definition TEXT NOT NULL,
    input TEXT NOT NULL,
    output TEXT NOT NULL,                 -- the answer the measurement scores
    label_space TEXT,
    changed INTEGER NOT NULL DEFAULT 0,   -- 1 when a transform changed the text
    PRIMARY KEY (query_set_id, idx)
) WITHOUT ROWID;

-- engine.influence: one scan = (model, training data, settings)
CREATE TABLE scan_runs (
    run_key TEXT PRIMARY KEY,
    model_fingerprint TEXT NOT NULL,
    train_sha256 TEXT NOT NULL,
    settings TEXT NOT NULL,               -- JSON
    factors_path TEXT,
    status TEXT NOT NULL,                 -- running | complete | failed | cancelled
    created_at TEXT NOT NULL,
    completed_at TEXT
);
CREATE TABLE influence (
    run_key TEXT NOT NULL,
    query_set_id TEXT NOT NULL,
    query_set_sha256 TEXT NOT NULL,       -- which version of the query set was scored
    uid TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (run_key, query_set_id, uid)
) WITHOUT ROWID;
CREATE TABLE self_influence (
    run_key TEXT NOT NULL,
    uid TEXT NOT NULL,
    score REAL NOT NULL,
    PRIMARY KEY (run_key, uid)
) WITHOUT ROWID;

-- engine.sentiment: key is an example uid or '<query_set_id>#<idx>'
CREATE TABLE sentiment (
    key TEXT NOT NULL,
    scorer TEXT NOT NULL,
    score REAL NOT NULL,                  -- in [-1, 1]
    PRIMARY KEY (key, scorer)
) WITHOUT ROWID;

-- engine.detect: one row per (detector, example); rank 1 is the most suspicious
CREATE TABLE detector_runs (
    detector TEXT PRIMARY KEY,
    rule TEXT NOT NULL,                   -- the flagged-set rule in words, shown in CLI and UI
    params TEXT NOT NULL DEFAULT '{}',
    run_key TEXT,
    n_scored INTEGER NOT NULL,
    n_flagged INTEGER NOT NULL,
    is_default INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL
);
CREATE TABLE detector_scores (
    detector TEXT NOT NULL,
    uid TEXT NOT NULL,
    score REAL,                           -- NULL when not scored (e.g. prefiltered out)
    rank INTEGER,
    flagged INTEGER NOT NULL DEFAULT 0,
    scored INTEGER NOT NULL DEFAULT 1,
    PRIMARY KEY (detector, uid)
) WITHOUT ROWID;
CREATE INDEX detector_scores_rank ON detector_scores (detector, rank);

-- engine.decisions: current status (derived, for fast paging) and the event history
CREATE TABLE review_status (
    uid TEXT PRIMARY KEY,
    status TEXT NOT NULL CHECK (status IN ('undecided', 'keep', 'quarantine', 'remove')),
    reason TEXT,
    note TEXT,
    decision_seq INTEGER
) WITHOUT ROWID;
CREATE INDEX review_status_status ON review_status (status);
CREATE TABLE decisions (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    ts TEXT NOT NULL,
    actor TEXT NOT NULL,
    uid TEXT NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('keep', 'quarantine', 'remove', 'revert')),
    prior_status TEXT NOT NULL,
    new_status TEXT NOT NULL,
    reason TEXT,
    note TEXT,
    bulk_id TEXT,                         -- shared by the decisions of one bulk action
    reverts_seq INTEGER                   -- for action = 'revert'
);
CREATE INDEX decisions_uid ON decisions (uid, seq);

-- engine.audit: the hash chain; mirrored to audit.jsonl in the workspace
CREATE TABLE audit_log (
    seq INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    action TEXT NOT NULL,
    record TEXT NOT NULL,                 -- canonical JSON of the whole record, hashes included
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE
);

-- free-form key/value settings (default detector, workspace creation info, ...)
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Migration (engine.transforms, engine.triggers): transform statistics, mined trigger
# candidates and their confirmation on a model.
_DETECTION = """
-- engine.transforms: how often a transform changed the text and the model's prediction
CREATE TABLE transform_stats (
    query_set_id TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    transform TEXT NOT NULL,
    seed INTEGER NOT NULL,
    n_queries INTEGER NOT NULL,
    n_text_changed INTEGER NOT NULL,
    n_label_changed INTEGER NOT NULL,
    model_fingerprint TEXT,
    n_pred_changed INTEGER,
    usable INTEGER NOT NULL,
    note TEXT,
    created_at TEXT NOT NULL
);

-- engine.triggers: candidate trigger phrases mined from the training data (no ground truth)
CREATE TABLE trigger_candidates (
    phrase TEXT NOT NULL,
    kind TEXT NOT NULL,
    rank INTEGER NOT NULL,
    score REAL NOT NULL,
    n_carriers INTEGER NOT NULL,
    n_target INTEGER NOT NULL,
    purity REAL NOT NULL,
    p_value REAL NOT NULL,
    q_value REAL NOT NULL,
    n_disagree INTEGER NOT NULL,
    disagree_rate REAL NOT NULL,
    disagree_p REAL NOT NULL,
    significant INTEGER NOT NULL,
    targets TEXT NOT NULL,
    tasks TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    PRIMARY KEY (phrase, kind)
);
CREATE INDEX trigger_candidates_rank ON trigger_candidates (rank);

-- engine.triggers: a candidate inserted into clean queries of another label, on one model
CREATE TABLE trigger_confirmations (
    phrase TEXT NOT NULL,
    kind TEXT NOT NULL,
    model_fingerprint TEXT NOT NULL,
    task TEXT NOT NULL,
    target TEXT NOT NULL,
    n_queries INTEGER NOT NULL,
    base_rate REAL NOT NULL,
    triggered_rate REAL NOT NULL,
    flip_rate REAL NOT NULL,
    confirmed INTEGER NOT NULL,
    query_set_id TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (phrase, kind, model_fingerprint, task)
);
"""


# Migration (engine.prefilter): which training examples a TF-IDF prefilter kept for scoring.
_PREFILTER = """
-- engine.prefilter: one row per candidate selection; the others are left unscored on purpose
CREATE TABLE prefilter_runs (
    id INTEGER PRIMARY KEY,
    method TEXT NOT NULL,                 -- 'tfidf'
    params TEXT NOT NULL,                 -- JSON: candidates (count or fraction), aggregate
    train_sha256 TEXT NOT NULL,           -- over the training uids and content hashes it ranked
    n_train INTEGER NOT NULL,
    n_candidates INTEGER NOT NULL,        -- size of the union over query sets
    per_set TEXT NOT NULL,                -- JSON: query set id -> how many it kept
    run_key TEXT,                         -- the scan that used it
    created_at TEXT NOT NULL
);
CREATE TABLE prefilter_candidates (
    prefilter_id INTEGER NOT NULL REFERENCES prefilter_runs(id) ON DELETE CASCADE,
    uid TEXT NOT NULL,
    query_set_id TEXT NOT NULL,           -- the query set where it ranked best
    rank INTEGER NOT NULL,                -- that rank, 1 = most similar
    similarity REAL NOT NULL,
    PRIMARY KEY (prefilter_id, uid)
) WITHOUT ROWID;
"""


MIGRATIONS: list[str] = [_V1, _DETECTION, _PREFILTER]


def migrate(conn: sqlite3.Connection) -> int:
    """Run the migrations this database has not seen, each in its own transaction."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > len(MIGRATIONS):
        from engine.errors import UserError

        raise UserError(
            f"this workspace has schema version {version}, newer than this poison-tui "
            f"understands ({len(MIGRATIONS)}); upgrade poison-tui"
        )
    for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in _split(script):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {number}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return len(MIGRATIONS)


def _split(script: str) -> list[str]:
    # executescript() would COMMIT implicitly; split into statements (sqlite3 decides where
    # one ends, so ';' inside comments and strings is fine) to keep one transaction.
    statements, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            statements.append(buf.strip())
            buf = ""
    if buf.strip() and not all(not ln.strip() or ln.strip().startswith("--") for ln in buf.splitlines()):
        raise ValueError(f"incomplete SQL statement in migration: {buf.strip()[:80]}")
    return statements
