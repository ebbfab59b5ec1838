"""Messages that workers post to the UI. Workers never touch widgets: they post one of these
(``post_message`` is thread-safe and, unlike ``call_from_thread``, never blocks the worker)."""

from __future__ import annotations

from textual.message import Message

from engine.progress import ProgressEvent


class IndexLoaded(Message):
    """The queue's filter/sort index finished loading in the background."""


class ComputeProgress(Message):
    def __init__(self, event: ProgressEvent) -> None:
        super().__init__()
        self.event = event


class ComputeFinished(Message):
    def __init__(self, outcome: str, error: str | None = None) -> None:
        super().__init__()
        self.outcome = outcome  # "done" | "cancelled" | "failed"
        self.error = error


class BulkApplied(Message):
    """A bulk decision committed (or failed: ``error`` says why, and nothing was written)."""

    def __init__(self, uids: list[str], action: str, error: str | None = None) -> None:
        super().__init__()
        self.uids, self.action, self.error = uids, action, error


class JobFinished(Message):
    """An export or sign-off finished; ``summary`` is shown to the analyst."""

    def __init__(self, summary: str, error: str | None = None) -> None:
        super().__init__()
        self.summary, self.error = summary, error
