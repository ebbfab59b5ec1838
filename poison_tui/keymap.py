"""User key remapping: a TOML file mapping binding ids to keys.

    # ~/.config/poison-tui/keymap.toml (or --keymap FILE)
    [keymap]
    "review.keep" = "z"
    "review.remove" = "d,delete"

Every binding of the app has an id (see the help screen, ``?``); unknown ids are an error so a
typo does not silently leave the old key in place.
"""

from __future__ import annotations

import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

from engine.errors import InputError

FILE_NAME = "keymap.toml"


def default_keymap_path() -> Path:
    from platformdirs import user_config_path

    return user_config_path("poison-tui") / FILE_NAME


def load_keymap(path: Path, known_ids: set[str], defaults: dict[str, str] | None = None) -> dict[str, str]:
    """Read and check a keymap. ``defaults`` (id -> keys) of bindings active together, when
    given, is used to refuse a key that would shadow or be shadowed by another binding."""
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
                         hint='for example:  [keymap]\n  "review.keep" = "z"')
    keymap: dict[str, str] = {}
    for binding_id, keys in table.items():
        if binding_id not in known_ids:
            raise InputError("unknown binding id", file=str(path), field=f"keymap.{binding_id}",
                             hint="known ids: " + ", ".join(sorted(known_ids)))
        if not isinstance(keys, str) or not keys.strip():
            raise InputError("keys must be a non-empty string such as \"k\" or \"ctrl+k,k\"",
                             file=str(path), field=f"keymap.{binding_id}")
        keymap[binding_id] = keys.replace(" ", "")
    if defaults:
        _check_conflicts(path, {**defaults, **{k: v for k, v in keymap.items() if k in defaults}}, keymap)
    return keymap


def _check_conflicts(path: Path, final: dict[str, str], changed: dict[str, str]) -> None:
    # Textual's own normalisation ("?" and "question_mark" are one key); private, but it is
    # exactly what App.set_keymap applies, and textual is pinned.
    from textual.keys import _normalize_key_list

    owner: dict[str, str] = {}
    for binding_id, keys in final.items():
        for key in _normalize_key_list(keys).split(","):
            other = owner.setdefault(key, binding_id)
            if other != binding_id and (binding_id in changed or other in changed):
                mine = binding_id if binding_id in changed else other
                raise InputError(f"key {key!r} is already bound to {other if mine == binding_id else binding_id}",
                                 file=str(path), field=f"keymap.{mine}",
                                 hint="remap that binding too, or choose a free key (see ? in the app)")
