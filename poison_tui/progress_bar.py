"""Render engine progress events as rich progress bars on the terminal (one bar per stage)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from engine.progress import ProgressEvent, ProgressFn


@contextmanager
def cli_progress(console: Console | None = None) -> Iterator[ProgressFn]:
    """Yield a ProgressFn drawing one bar per stage; plain lines when stderr is not a terminal."""
    console = console or Console(stderr=True)
    if not console.is_terminal:
        last: dict[str, int] = {}

        def plain(ev: ProgressEvent) -> None:
            # one line per 10% so logs stay readable
            step = int(ev.fraction * 10)
            if last.get(ev.stage) != step:
                last[ev.stage] = step
                print(f"[{ev.stage}] {ev.done}/{ev.total} {ev.message}".rstrip(), file=sys.stderr, flush=True)

        yield plain
        return

    progress = Progress(
        TextColumn("{task.description:<14}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
    )
    tasks: dict[str, int] = {}
    with progress:

        def fancy(ev: ProgressEvent) -> None:
            if ev.stage not in tasks:
                tasks[ev.stage] = progress.add_task(ev.stage, total=ev.total or None)
            progress.update(tasks[ev.stage], completed=ev.done, total=ev.total or None)

        yield fancy
