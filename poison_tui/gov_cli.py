"""Helpers shared by the governance subcommands (keygen, signoff, verify, export, decide)."""

from __future__ import annotations

import getpass
import os
import sys
from pathlib import Path

from engine.errors import UserError

PASSPHRASE_ENV = "POISON_TUI_PASSPHRASE"


def read_passphrase(passphrase_file: Path | None, confirm: bool = False) -> bytes:
    """From --passphrase-file, else $POISON_TUI_PASSPHRASE, else a prompt on the terminal."""
    if passphrase_file is not None:
        try:
            text = Path(passphrase_file).read_text("utf-8")
        except OSError as exc:
            raise UserError(f"{passphrase_file}: cannot read the passphrase file ({exc.strerror})") from None
        return text.rstrip("\r\n").encode("utf-8")
    env = os.environ.get(PASSPHRASE_ENV)
    if env:
        return env.encode("utf-8")
    if not sys.stdin.isatty():
        raise UserError(f"no passphrase: pass --passphrase-file or set {PASSPHRASE_ENV}")
    first = getpass.getpass("passphrase: ")
    if confirm and getpass.getpass("again: ") != first:
        raise UserError("the passphrases differ")
    return first.encode("utf-8")


def safe(text: object, limit: int = 300) -> str:
    """Untrusted text (identities, uids, file names from a bundle) without terminal escapes."""
    from engine.formats.base import printable

    return printable(str(text), limit)
