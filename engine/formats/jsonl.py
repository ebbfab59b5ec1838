"""JSON Lines: one record per line, parsed with orjson straight from the file's bytes.

Splitting the bytes on ``\\n`` ourselves (rather than handing the file to a columnar reader)
gives every record its exact raw bytes and its line number, which errors and export need;
``bench/ingest.py`` measures this against polars' NDJSON reader.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson

from engine.errors import InputError
from engine.formats.base import UTF8_BOM, Problems, ReadOptions, decode_error, refuse_utf16, too_big
from engine.formats.framing import framed_layout
from engine.records import Record

# convert(obj, line, raw, ordinal) -> Record; raises InputError for a bad record
Convert = Callable[[dict[str, Any], int, bytes, int], Record]


def read_jsonl(data: bytes, file: str, opts: ReadOptions, problems: Problems,
               convert: Convert) -> tuple[list[Record], dict[str, Any]]:
    refuse_utf16(data, file)
    utf8 = opts.encoding in ("utf-8", "utf-8-sig")
    bom = UTF8_BOM if utf8 and data.startswith(UTF8_BOM) else b""
    lines = data[len(bom):].split(b"\n")
    last = len(lines) - 1
    limit = opts.max_record_bytes
    records: list[Record] = []
    seps: list[bytes] = []
    prefix, pending, prev_term = bom, b"", b""
    for i, line in enumerate(lines):
        term = b"\n" if i < last else b""
        if line.endswith(b"\r"):
            line, term = line[:-1], b"\r" + term
        if not line or line.isspace():
            pending += line + term  # blank lines belong to the framing
            continue
        lineno = i + 1
        try:
            if len(line) > limit:
                raise too_big(len(line), limit, file, lineno)
            try:
                obj = orjson.loads(line if utf8 else line.decode(opts.encoding))
            except orjson.JSONDecodeError as exc:
                raise _syntax_error(line, exc, file, lineno, opts.encoding, truncated=not term) from None
            except UnicodeDecodeError as exc:
                raise decode_error(exc, line, 0, file, opts.encoding, lineno) from None
            if type(obj) is not dict:
                raise InputError(f"expected a JSON object, found {_json_type(obj)}", file=file, line=lineno)
            record = convert(obj, lineno, line, len(records))
        except InputError as err:
            problems.bad(err, line)
            continue  # a skipped line leaves the output with its terminator
        if records:
            seps.append(prev_term + pending)
        else:
            prefix += pending
        pending, prev_term = b"", term
        records.append(record)
    return records, framed_layout("jsonl", prefix, seps, prev_term + pending, b"\n", prev_term)


def _json_type(obj: object) -> str:
    return {list: "an array", str: "a string", int: "a number", float: "a number", bool: "a boolean",
            type(None): "null"}.get(type(obj), type(obj).__name__)


def _syntax_error(line: bytes, exc: orjson.JSONDecodeError, file: str, lineno: int, encoding: str,
                  *, truncated: bool) -> InputError:
    """Say where the line breaks and what was expected (the stdlib parser words that best)."""
    try:
        text = line.decode(encoding if encoding != "utf-8-sig" else "utf-8")
    except UnicodeDecodeError as dec:
        return decode_error(dec, line, 0, file, encoding, lineno)
    msg, column, at_end = exc.msg, exc.colno, exc.pos >= len(text) - 1
    try:
        json.loads(text)
    except json.JSONDecodeError as std:
        msg, column = std.msg, std.colno
        at_end = at_end or std.msg.startswith("Unterminated") or std.pos >= len(text.rstrip()) - 1
    except (RecursionError, ValueError):
        pass  # nesting too deep for the stdlib parser: keep orjson's account
    if truncated and at_end:
        return InputError(
            f"truncated record at end of file: {msg}", file=file, line=lineno, column=column,
            hint="the file looks cut short (an interrupted copy?); restore it, or pass --lenient to skip this line",
        )
    return InputError(f"malformed JSON: {msg}", file=file, line=lineno, column=column)
