"""Progress reporting and cancellation shared by every long-running engine stage.

Engine code never draws anything: it calls a ``ProgressFn`` that the CLI renders as a
progress bar and the UI forwards as a message. Cancellation is cooperative: stages call
``token.check()`` between chunks, so a cancelled run stops at a chunk boundary and the
chunks already committed stay valid for a resume.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import Cancelled


@dataclass(frozen=True)
class ProgressEvent:
    stage: str  # short machine name, e.g. "covariance", "scores"
    done: int
    total: int
    started_at: float  # time.monotonic() when the stage began
    message: str = ""

    @property
    def fraction(self) -> float:
        return 1.0 if self.total <= 0 else min(1.0, self.done / self.total)

    @property
    def eta_s(self) -> float | None:
        if self.done <= 0 or self.total <= 0:
            return None
        elapsed = time.monotonic() - self.started_at
        return elapsed * (self.total - self.done) / self.done


ProgressFn = Callable[[ProgressEvent], None]


def no_progress(_: ProgressEvent) -> None:
    pass


@dataclass
class CancelToken:
    _event: threading.Event = field(default_factory=threading.Event)

    def cancel(self) -> None:
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        if self._event.is_set():
            raise Cancelled()


class Stage:
    """Helper that tracks one stage and emits events: ``with Stage(fn, "scores", n) as s: s.advance()``."""

    def __init__(self, fn: ProgressFn, stage: str, total: int, token: CancelToken | None = None) -> None:
        self.fn, self.stage, self.total, self.token = fn, stage, total, token
        self.done = 0
        self.started_at = time.monotonic()

    def __enter__(self) -> Stage:
        self.fn(ProgressEvent(self.stage, 0, self.total, self.started_at))
        return self

    def advance(self, n: int = 1, message: str = "") -> None:
        self.done += n
        self.fn(ProgressEvent(self.stage, self.done, self.total, self.started_at, message))
        if self.token is not None:
            self.token.check()

    def __exit__(self, *exc: object) -> None:
        return None
