"""A workspace: a directory holding ``poison.db`` (SQLite, WAL) and the files derived from it.

Layout::

    <name>.poison/
      poison.db        examples, query sets, scores, decisions, audit chain
      audit.jsonl      mirror of the audit chain (engine.audit)
      factors/         EK-FAC factors in safetensors (engine.influence)
      models/          demo models trained by the project (engine.train)
      exports/         cleaned datasets and manifests (engine.export)

sqlite3 connections must not cross threads, so each thread opens its own with
``Workspace.connect()``; ``Workspace.db`` is the calling thread's sqlite-utils view.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import sqlite_utils

from engine.errors import UserError
from engine.schema import migrate

DB_NAME = "poison.db"
WORKSPACE_SUFFIX = ".poison"


def default_workspace_for(train_path: Path) -> Path:
    """``data/train.jsonl`` -> ``data/train.poison/`` (beside the data, named after it)."""
    train_path = Path(train_path)
    return train_path.with_name(train_path.stem.split(".")[0] + WORKSPACE_SUFFIX)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Workspace:
    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._local = threading.local()

    # -- opening -----------------------------------------------------------------------
    @classmethod
    def create(cls, path: Path) -> Workspace:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        ws = cls(path)
        with ws.connect() as conn:
            migrate(conn)
        return ws

    @classmethod
    def open(cls, path: Path) -> Workspace:
        path = Path(path)
        if path.is_file() and path.name == DB_NAME:
            path = path.parent
        if not (path / DB_NAME).is_file():
            raise UserError(
                f"{path}: not a poison-tui workspace (no {DB_NAME}); create one with "
                f"'poison-tui ingest TRAIN --workspace {path}'"
            )
        ws = cls(path)
        with ws.connect() as conn:
            migrate(conn)
        return ws

    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    @contextmanager
    def connect(self) -> Iterator[sqlite3.Connection]:
        """A fresh connection for this thread, closed on exit."""
        conn = self._new_connection()
        try:
            yield conn
        finally:
            conn.close()

    def _new_connection(self) -> sqlite3.Connection:
        # isolation_level=None: we issue BEGIN/COMMIT ourselves, so a transaction means
        # exactly what the code says (the sqlite3 module's implicit BEGINs are surprising).
        conn = sqlite3.connect(self.db_path, isolation_level=None, timeout=30.0)
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = FULL")  # a decision shown as done survives power loss
        conn.execute("PRAGMA foreign_keys = ON")
        conn.row_factory = sqlite3.Row
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        """This thread's long-lived connection (opened on first use)."""
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._new_connection()
        return conn

    @property
    def db(self) -> sqlite_utils.Database:
        """sqlite-utils view over this thread's connection."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = sqlite_utils.Database(self.conn)
        return db

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None
            self._local.db = None

    @contextmanager
    def transaction(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` .. ``COMMIT``; rolls back on any exception."""
        conn = conn or self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    # -- small helpers used everywhere ---------------------------------------------------
    def subdir(self, name: str) -> Path:
        p = self.path / name
        p.mkdir(parents=True, exist_ok=True)
        return p

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str, conn: sqlite3.Connection | None = None) -> None:
        (conn or self.conn).execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def get_meta_json(self, key: str, default: object = None) -> object:
        raw = self.get_meta(key)
        return default if raw is None else json.loads(raw)
