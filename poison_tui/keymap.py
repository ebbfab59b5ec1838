"""User key remapping: a TOML file mapping binding ids to keys.

    # ~/.config/poison-tui/keymap.toml (or --keymap FILE)
    [keymap]
    "review.keep" = "k"
    "review.remove" = "d,delete"

Every binding of the app has an id (see the help screen, ``?``); unknown ids are an error so a
typo does not silently leave the old key in place.
"""

from __future__ import annotations

from pathlib import Path

import tomllib

from engine.errors import InputError

FILE_NAME = "keymap.toml"


def default_keymap_path() -> Path:
    from platformdirs import user_config_path

    return user_config_path("poison-tui") / FILE_NAME


def load_keymap(path: Path, known_ids: set[str]) -> dict[str, str]:
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError("keymap file not found", file=str(path)) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"not UTF-8 text ({exc.reason})", file=str(path)) from None
    except tomllib.TOMLDecodeError as exc:
        # the message ends "(at line L, column C)"; keep it as the reason
        raise InputError(f"invalid TOML: {exc}", file=str(path)) from None
    table = data.get("keymap")
    if not isinstance(table, dict):
        raise InputError("expected a [keymap] table of binding id = \"keys\"", file=str(path),
                         hint='for example:  [keymap]\n  "review.keep" = "k"')
    keymap: dict[str, str] = {}
    for binding_id, keys in table.items():
        if binding_id not in known_ids:
            raise InputError("unknown binding id", file=str(path), field=f"keymap.{binding_id}",
                             hint="known ids: " + ", ".join(sorted(known_ids)))
        if not isinstance(keys, str) or not keys.strip():
            raise InputError("keys must be a non-empty string such as \"k\" or \"ctrl+k,k\"",
                             file=str(path), field=f"keymap.{binding_id}")
        keymap[binding_id] = keys.replace(" ", "")
    return keymap
