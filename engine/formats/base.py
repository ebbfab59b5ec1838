"""What every format reader shares: options, the result, lenient error collection, decoding."""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from typing import Any

from engine.errors import InputError, UserError
from engine.records import Record

DEFAULT_MAX_RECORD_BYTES = 1_000_000
UTF8_BOM = codecs.BOM_UTF8


@dataclass(frozen=True)
class ReadOptions:
    encoding: str = "utf-8"
    lenient: bool = False
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES
    # canonical field -> column, for csv / parquet / hf-disk (None: recognise the columns)
    column_map: dict[str, str] | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "encoding": self.encoding,
            "lenient": self.lenient,
            "max_record_bytes": self.max_record_bytes,
            "column_map": self.column_map,
        }


@dataclass
class Skipped:
    """A record --lenient left out, for the skip report."""

    file: str
    line: int | None
    column: int | None
    reason: str
    excerpt: str

    def as_json(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "column": self.column, "reason": self.reason,
                "excerpt": self.excerpt}


@dataclass
class ReadResult:
    format: str
    records: list[Record]
    layout: dict[str, Any]  # what write_records needs to rebuild the file (stored in datasets.layout)
    sha256: str = ""  # of the file's bytes (hf-disk: of the directory's files)
    skipped: list[Skipped] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


class Problems:
    """Strict mode raises the first bad record; --lenient records it and goes on."""

    def __init__(self, file: str, lenient: bool) -> None:
        self.file, self.lenient = file, lenient
        self.skipped: list[Skipped] = []

    def bad(self, err: InputError, excerpt: bytes | str = b"") -> None:
        if not self.lenient:
            raise err
        self.skipped.append(Skipped(self.file, err.line, err.column, err.reason if err.field is None
                                    else f"{err.reason} (field '{err.field}')", printable(excerpt, 200)))


def printable(text: bytes | str, limit: int = 80) -> str:
    """Untrusted text made safe to show: control characters escaped, length capped."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    out = []
    for ch in text[:limit]:
        code = ord(ch)
        if code < 0x20 or 0x7F <= code < 0xA0 or ch in "\u2028\u2029\u200e\u200f\u202a\u202b\u202c\u202d\u202e":
            out.append(ch.encode("unicode_escape").decode("ascii"))
        else:
            out.append(ch)
    return "".join(out) + ("…" if len(text) > limit else "")


def check_encoding(encoding: str) -> str:
    """Normalise --encoding; only ASCII-compatible encodings, because records are split on bytes."""
    try:
        name = codecs.lookup(encoding).name
    except LookupError:
        raise UserError(f"unknown encoding '{printable(encoding)}' (--encoding)") from None
    if name.startswith(("utf-16", "utf-32")):
        raise UserError(
            f"encoding {name} is not supported; convert the file to UTF-8 first "
            f"(e.g. iconv -f {name.upper()} -t UTF-8 IN > OUT)"
        )
    return name


def refuse_utf16(data: bytes, file: str) -> None:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise InputError(
            "the file is UTF-16 (it starts with a UTF-16 byte order mark)", file=file,
            hint="convert it to UTF-8 first, e.g. iconv -f UTF-16 -t UTF-8 IN > OUT",
        )


def decode_error(exc: UnicodeDecodeError, data: bytes, offset: int, file: str, encoding: str,
                 first_line: int = 1) -> InputError:
    """Locate an undecodable byte (line and byte column) and suggest --encoding."""
    pos = offset + exc.start
    line = data.count(b"\n", 0, pos) + first_line
    column = pos - (data.rfind(b"\n", 0, pos) + 1) + 1
    return InputError(
        f"byte 0x{data[pos]:02x} is not valid {encoding}", file=file, line=line, column=column,
        hint="pass the file's real encoding, e.g. --encoding latin-1 or --encoding cp1252",
    )


def decode_text(data: bytes, encoding: str, file: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise decode_error(exc, data, 0, file, encoding) from None


def too_big(size: int, limit: int, file: str, line: int | None) -> InputError:
    return InputError(
        f"record is {size:,} bytes, over the limit of {limit:,} bytes", file=file, line=line,
        hint="raise the limit with --max-record-mb if records this large are expected",
    )
