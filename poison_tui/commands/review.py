"""``poison-tui review [WORKSPACE]``: open the review app on a workspace."""

from __future__ import annotations

import argparse
from pathlib import Path

from engine.errors import UserError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "review",
        help="walk the ranked suspects and decide keep / quarantine / remove",
        description="Open the review app on WORKSPACE (default: the only *.poison directory here).",
    )
    parser.add_argument("workspace", nargs="?", type=Path, help="a workspace directory (NAME.poison)")
    parser.add_argument("--keymap", type=Path, default=None,
                        help="TOML file remapping keys by binding id (default: keymap.toml in the "
                             "user config dir, when present)")
    parser.add_argument("--actor", default=None,
                        help="who is deciding, as recorded in the audit log (default: $POISON_TUI_ACTOR "
                             "or the login name)")
    parser.set_defaults(handler=handle)


def _find_workspace() -> Path:
    found = sorted(p for p in Path.cwd().glob("*.poison") if p.is_dir())
    if len(found) == 1:
        return found[0]
    if not found:
        raise UserError("no workspace given and no *.poison directory here; "
                        "pass one: poison-tui review PATH.poison")
    raise UserError("several workspaces here (" + ", ".join(p.name for p in found) + "); name one")


def handle(args: argparse.Namespace) -> int:
    import sys

    from engine.workspace import Workspace

    ws = Workspace.open(args.workspace or _find_workspace())  # a bad path is the first thing to say
    ws.close()
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("the review app needs a terminal (stdin and stdout must be a tty)")
    from poison_tui.app import run_review

    return run_review(ws.path, keymap_path=args.keymap, actor=args.actor)
