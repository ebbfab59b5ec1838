from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.schema import MIGRATIONS
from engine.workspace import Workspace, default_workspace_for


def test_create_runs_every_migration_in_wal_mode(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    assert ws.conn.execute("PRAGMA user_version").fetchone()[0] == len(MIGRATIONS)
    assert ws.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = set(ws.db.table_names())
    assert {"examples", "influence", "decisions", "audit_log", "detector_scores"} <= tables


def test_open_refuses_a_directory_without_database(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not a poison-tui workspace"):
        Workspace.open(tmp_path)


def test_open_refuses_a_newer_schema(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    ws.conn.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 5}")
    ws.close()
    with pytest.raises(UserError, match="newer than this poison-tui"):
        Workspace.open(tmp_path / "ws")


def test_transaction_rolls_back_on_error(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    with pytest.raises(RuntimeError), ws.transaction():
        ws.set_meta("k", "v")
        raise RuntimeError("boom")
    assert ws.get_meta("k") is None


def test_each_thread_gets_its_own_connection(tmp_path: Path) -> None:
    ws = Workspace.create(tmp_path / "ws")
    ws.set_meta("k", "main")
    seen: list[str | None] = []
    t = threading.Thread(target=lambda: seen.append(ws.get_meta("k")))
    t.start()
    t.join()
    assert seen == ["main"]
    assert isinstance(ws.conn, sqlite3.Connection)


def test_default_workspace_sits_beside_the_data() -> None:
    assert default_workspace_for(Path("/d/train.jsonl")) == Path("/d/train.poison")
    assert default_workspace_for(Path("/d/train.jsonl.gz")) == Path("/d/train.poison")
