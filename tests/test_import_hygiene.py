"""engine/ must stay usable headless: importing it must not pull in Textual."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import engine


def test_engine_modules_do_not_import_textual() -> None:
    names = [m.name for m in pkgutil.walk_packages(engine.__path__, "engine.")]
    assert "engine.workspace" in names
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}:\n"
        "    importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"engine imports textual: {out.stdout}"


def test_cli_help_lists_subcommands_without_heavy_imports() -> None:
    code = (
        "import sys\n"
        "from poison_tui.cli import build_parser\n"
        "build_parser()\n"
        "heavy = [m for m in ('torch', 'transformers', 'textual') if m in sys.modules]\n"
        "print(','.join(heavy))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"--help imports heavy modules: {out.stdout}"
