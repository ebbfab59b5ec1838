"""Show untrusted text literally: no markup, no terminal control, nothing invisible.

Training data may be hostile. Rich ``Text`` never parses markup, so ``[bold red]`` stays
visible as typed; this module makes every control character visible too, so an ESC
sequence cannot move the cursor, retitle the terminal or hide the rest of the line.
"""

from __future__ import annotations

import unicodedata

from rich.text import Text

# C0 controls and DEL have Unicode "control pictures" (U+2400..U+2421): \x1b becomes ␛.
_PICTURES = {c: chr(0x2400 + c) for c in range(0x20)} | {0x7F: "\u2421"}


def visible(text: str, keep_newlines: bool = False) -> str:
    """``text`` with every control/format character replaced by a visible stand-in."""
    out = []
    for ch in text:
        code = ord(ch)
        if ch == "\n" and keep_newlines:
            out.append("⏎\n")
        elif code in _PICTURES:
            out.append(_PICTURES[code])
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            # C1 controls (\x9b is a one-byte CSI), bidi overrides, zero-width characters
            out.append(f"⟨U+{code:04X}⟩")
        else:
            out.append(ch)
    return "".join(out)


def literal(text: str, style: str = "", keep_newlines: bool = True) -> Text:
    """A Rich Text of ``text`` shown as data: wraps long words instead of cutting them."""
    return Text(visible(text, keep_newlines), style=style, overflow="fold", no_wrap=False)
