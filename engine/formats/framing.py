"""Rebuilding text files from their records: a file = prefix, records joined by separators, suffix.

JSONL, CSV and JSON arrays are all that shape. The framing (BOM, header, ``[``, newline style,
indentation, the trailing newline or its absence, blank lines) is stored once per dataset;
each record's exact bytes are stored with the record. Framing bytes are kept in the JSON
layout as latin-1 strings (one character per byte) so any encoding survives exactly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, BinaryIO


def _s(b: bytes) -> str:
    return b.decode("latin-1")


def _b(s: str) -> bytes:
    return s.encode("latin-1")


def framed_layout(container: str, prefix: bytes, seps: Sequence[bytes], suffix: bytes,
                  default_sep: bytes, last_term: bytes = b"", **extra: Any) -> dict[str, Any]:
    """``seps[i]`` lies between record i and i+1. The common one is stored once, others sparsely.

    ``suffix`` starts with the last record's own line terminator (``last_term``), which an
    output without records leaves out (else it would start with a blank line).
    """
    sep = Counter(seps).most_common(1)[0][0] if seps else default_sep
    odd = {str(i): _s(s) for i, s in enumerate(seps) if s != sep}
    return {"container": container, "prefix": _s(prefix), "sep": _s(sep), "seps": odd,
            "suffix": _s(suffix), "last_term": _s(last_term), **extra}


def write_framed(layout: dict[str, Any], raws: Sequence[bytes], fh: BinaryIO,
                 ordinals: Sequence[int] | None = None) -> None:
    """Write prefix, records, suffix. With every record kept in order, the file comes back byte
    for byte (irregular separators included); after removals the common separator joins them."""
    sep = _b(layout["sep"])
    odd = {int(k): _b(v) for k, v in layout.get("seps", {}).items()}
    fh.write(_b(layout["prefix"]))
    for i, raw in enumerate(raws):
        if i:
            prev = ordinals[i - 1] if ordinals is not None else i - 1
            contiguous = ordinals is None or ordinals[i] == prev + 1
            fh.write(odd.get(prev, sep) if contiguous else sep)
        fh.write(raw)
    suffix = _b(layout["suffix"])
    fh.write(suffix if raws else suffix[len(layout.get("last_term", "")):])
