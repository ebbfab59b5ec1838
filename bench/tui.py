"""Headless speed of the review app at 50,000 examples, with baselines from the same run.

    python bench/tui.py [--n 50000] [--repeats 15] [--no-datatable]

Measured (time.perf_counter, headless ``App.run_test`` at 160x50):
  first paint   app start -> the first queue row is painted
  decision      key press -> the decided row repainted with its new status (median)
  filter        filter change -> the first row of the new view painted (median)
  compute key   a key press -> its handler, while a CPU-bound compute runs in a worker (median)
Baselines: an empty Textual app's first paint, and the stock DataTable's first paint with
the same 50,000 rows (what the Line-API queue replaces). Targets: first paint <= 0.5 s,
decision <= 50 ms, filter <= 200 ms, compute key < 100 ms.
The last line is ``tui first_paint_s=<a> decision_ms=<b> filter_ms=<c>``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from textual import events  # noqa: E402
from textual.app import App, ComposeResult  # noqa: E402
from textual.widgets import DataTable, Static  # noqa: E402
from tui_fixtures import make_workspace  # noqa: E402

from engine.errors import Cancelled  # noqa: E402
from engine.progress import ProgressEvent  # noqa: E402
from poison_tui.app import ReviewApp  # noqa: E402
from poison_tui.screens.compute import ComputeScreen  # noqa: E402
from poison_tui.widgets.suspect_list import SuspectList  # noqa: E402

SIZE = (160, 50)


class PaintProbe:
    """Wraps SuspectList.render_line to timestamp rows as they are painted."""

    def __init__(self) -> None:
        self.events: list[tuple[float, str, str]] = []  # (time, uid, status)
        original = SuspectList.render_line

        def render_line(widget: SuspectList, y: int):
            strip = original(widget, y)
            if y >= 1:
                row = widget.row_at(int(widget.scroll_offset.y) + y - 1)
                if row is not None:
                    self.events.append((time.perf_counter(), row.uid, row.status))
            return strip

        SuspectList.render_line = render_line  # type: ignore[method-assign]

    def first_after(self, t0: float, uid: str | None = None, status: str | None = None) -> float | None:
        for t, u, s in self.events:
            if t >= t0 and (uid is None or u == uid) and (status is None or s == status):
                return t
        return None


async def wait_for(cond, timeout: float = 30.0) -> None:
    deadline = time.perf_counter() + timeout
    while not cond():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.001)


async def empty_app_paint() -> float:
    painted: list[float] = []

    class Empty(App):
        def compose(self) -> ComposeResult:
            yield Static("hello")

        def on_mount(self) -> None:
            self.call_after_refresh(lambda: painted.append(time.perf_counter()))

    t0 = time.perf_counter()
    app = Empty()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: painted)
        await pilot.pause()
    return painted[0] - t0


async def datatable_paint(ws_path: Path) -> float:
    """The stock DataTable holding the same rows the queue shows (one query, all rows)."""
    import sqlite3

    conn = sqlite3.connect(ws_path / "poison.db")
    rows = conn.execute(
        "SELECT ds.rank, e.source_id, e.task, ds.score, 'undecided', substr(e.input, 1, 60) "
        "FROM examples e JOIN detector_scores ds ON ds.uid = e.uid AND ds.detector = 'ekfac_sentiment' "
        "WHERE e.role = 'train' ORDER BY ds.rank"
    ).fetchall()
    conn.close()
    painted: list[float] = []

    class Table(App):
        def compose(self) -> ComposeResult:
            yield DataTable()

        def on_mount(self) -> None:
            table = self.query_one(DataTable)
            table.add_columns("rank", "id", "task", "score", "status", "input")
            table.add_rows(rows)
            self.call_after_refresh(lambda: painted.append(time.perf_counter()))

    t0 = time.perf_counter()
    app = Table()
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: painted, timeout=300)
        await pilot.pause()
    return painted[0] - t0


def _busy_job(ws, progress, token) -> None:
    """CPU-bound pure Python (holds the GIL), reporting progress like an engine stage."""
    t0 = time.monotonic()
    total = 400
    for done in range(total):
        acc = 0
        for i in range(20_000):
            acc += i * i
        progress(ProgressEvent("busy", done + 1, total, t0))
    raise Cancelled()


async def review_app(ws_path: Path, repeats: int) -> dict[str, float | list[float]]:
    probe = PaintProbe()
    t0 = time.perf_counter()
    app = ReviewApp(ws_path, actor="bench", compute_job=_busy_job)
    out: dict[str, float | list[float]] = {}
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(lambda: probe.first_after(t0) is not None)
        out["first_paint_s"] = probe.first_after(t0) - t0
        await app.workers.wait_for_complete()
        await pilot.pause()
        queue = app.queue
        table = queue.query_one(SuspectList)

        decision = []
        for _ in range(repeats):
            uid = table.current_uid
            t1 = time.perf_counter()
            await pilot.press("a")
            await wait_for(lambda uid=uid, t1=t1: probe.first_after(t1, uid, "keep") is not None)
            decision.append((probe.first_after(t1, uid, "keep") - t1) * 1000)
        out["decision_ms"] = decision

        filters = []
        views = [("undecided",), ("keep",), (), ("undecided",), ()]
        for i in range(repeats):
            statuses = views[i % len(views)]
            t1 = time.perf_counter()
            queue.set_status_filter(statuses[0] if statuses else None)
            await wait_for(lambda t1=t1: probe.first_after(t1) is not None)
            filters.append((probe.first_after(t1) - t1) * 1000)
            await pilot.pause()
        out["filter_ms"] = filters

        reacted: list[float] = []
        original = ComputeScreen.action_cancel

        def timed_cancel(screen: ComputeScreen) -> None:
            reacted.append(time.perf_counter())
            original(screen)

        ComputeScreen.action_cancel = timed_cancel  # type: ignore[method-assign]
        app.open_compute()
        await asyncio.sleep(0.5)  # let the busy worker get going
        t1 = time.perf_counter()
        app.post_message(events.Key("escape", None))
        await wait_for(lambda: reacted)
        out["compute_key_ms"] = [(reacted[0] - t1) * 1000]
        await app.workers.wait_for_complete()
        ComputeScreen.action_cancel = original  # type: ignore[method-assign]
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--no-datatable", action="store_true", help="skip the slow DataTable baseline")
    args = parser.parse_args()
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        ws = make_workspace(Path(tmp) / "bench.poison", n=args.n)
        ws.close()
        print(f"workspace: {args.n} training examples, built in {time.perf_counter() - t:.1f} s", flush=True)
        empty = asyncio.run(empty_app_paint())
        print(f"baseline empty_app_first_paint_s={empty:.3f}", flush=True)
        table = None
        if not args.no_datatable:
            table = asyncio.run(datatable_paint(ws.path))
            print(f"baseline datatable_first_paint_s={table:.3f} ({args.n} rows)", flush=True)
        res = asyncio.run(review_app(ws.path, args.repeats))
    first = float(res["first_paint_s"])
    dec = statistics.median(res["decision_ms"])
    flt = statistics.median(res["filter_ms"])
    key = statistics.median(res["compute_key_ms"])
    ratio = f", {table / first:.1f}x faster than the DataTable" if table else ""
    print(f"first_paint_s={first:.3f} ({first / empty:.2f}x the empty app{ratio}; target <= 0.5)")
    print(f"decision_ms median={dec:.1f} max={max(res['decision_ms']):.1f} over {args.repeats} (target <= 50)")
    print(f"filter_ms median={flt:.1f} max={max(res['filter_ms']):.1f} over {args.repeats} (target <= 200)")
    print(f"compute_key_ms={key:.1f} with a CPU-bound worker running (target < 100)")
    print(f"tui first_paint_s={first:.3f} decision_ms={dec:.1f} filter_ms={flt:.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
