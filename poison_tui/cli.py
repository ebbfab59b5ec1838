"""The ``poison-tui`` console command: discovers subcommands in ``poison_tui.commands``."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from engine import __version__
from engine.errors import Cancelled, UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="poison-tui",
        description="Find, review and remove poisoned examples in instruction-tuning data.",
    )
    parser.add_argument("--version", action="version", version=f"poison-tui {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    import poison_tui.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"poison_tui.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        return int(handler(args) or 0)
    except UserError as exc:
        print(f"poison-tui {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except Cancelled:
        print(f"poison-tui {args.command}: cancelled", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print(f"poison-tui {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
