"""Snapshots (pytest-textual-snapshot) of the queue, the detail of hostile text, the bulk
confirmation and the compute screen. Deterministic data, fixed theme and ETA clock; no
blinking cursor is on screen in any of them. Update with ``--snapshot-update`` after review."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from tui_fixtures import make_workspace, settle

from engine.errors import Cancelled
from engine.progress import ProgressEvent
from poison_tui.app import ReviewApp

SIZE = (120, 40)


@pytest.fixture
def ws_path(tmp_path: Path) -> Path:
    return make_workspace(tmp_path / "demo.poison", n=40).path


async def _settled(pilot) -> None:
    await settle(pilot.app, pilot)


def test_snapshot_queue(snap_compare, ws_path: Path) -> None:
    assert snap_compare(ReviewApp(ws_path, actor="snap"), terminal_size=SIZE, run_before=_settled)


def test_snapshot_detail_hostile_text(snap_compare, ws_path: Path) -> None:
    async def open_hostile(pilot) -> None:
        await _settled(pilot)
        await pilot.press("j", "enter")  # rank 2: ESC sequences, OSC title, BEL

    assert snap_compare(ReviewApp(ws_path, actor="snap"), terminal_size=SIZE, run_before=open_hostile)


def test_snapshot_bulk_confirmation(snap_compare, ws_path: Path) -> None:
    async def select_and_keep(pilot) -> None:
        await _settled(pilot)
        await pilot.press("space", "space", "space", "a")

    assert snap_compare(ReviewApp(ws_path, actor="snap"), terminal_size=SIZE, run_before=select_and_keep)


def _paused_job(ws, progress, token) -> None:
    progress(ProgressEvent("covariance", 40, 40, 1000.0))
    progress(ProgressEvent("scores", 50, 200, 1000.0, "chunk 50 of 200"))
    for _ in range(1000):  # hold still for the snapshot; stop when the app goes
        if token.cancelled:
            raise Cancelled()
        time.sleep(0.01)


def test_snapshot_compute(snap_compare, ws_path: Path) -> None:
    async def start_compute(pilot) -> None:
        await _settled(pilot)
        await pilot.press("c")
        for _ in range(100):
            await pilot.pause(0.02)
            if len(pilot.app.screen._rows) == 2:
                break
        await pilot.pause()

    app = ReviewApp(ws_path, actor="snap", compute_job=_paused_job, clock=lambda: 1010.0)
    assert snap_compare(app, terminal_size=SIZE, run_before=start_compute)
