"""Errors a user can act on. The CLI prints them without a traceback and exits 2."""

from __future__ import annotations


class UserError(Exception):
    """A problem with the user's input or environment, stated so they can fix it."""


class InputError(UserError):
    """Bad input data, located as precisely as we can: file, line, column, field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        column: int | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.file, self.line, self.column, self.field, self.hint = file, line, column, field, hint
        self.reason = message
        where = ":".join(str(p) for p in (file, line, column) if p is not None)
        text = f"{where}: {message}" if where else message
        if field is not None:
            text += f" (field '{field}')"
        if hint:
            text += f"\n  hint: {hint}"
        super().__init__(text)


class Cancelled(Exception):
    """Raised inside long work when the caller's cancel token is set."""
