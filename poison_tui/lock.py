"""One review app per workspace: an advisory lock on ``<workspace>/review.lock``.

``flock`` is released by the kernel when the process dies, SIGKILL included, so a crash never
leaves a stale lock behind; the pid written into the file only names the holder in the message.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from engine.errors import UserError

LOCK_NAME = "review.lock"


class WorkspaceLock:
    def __init__(self, workspace: Path) -> None:
        self.path = Path(workspace) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> WorkspaceLock:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(
                f"{self.path.parent} is already open in another poison-tui review (pid {holder}); "
                "close that one first: two reviewers on one workspace would interleave decisions"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (unlinking races)
            self._fd = None

    def __enter__(self) -> WorkspaceLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
