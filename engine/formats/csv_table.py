"""CSV / TSV with a header row; columns map onto the canonical fields (``--csv-map``).

Each record's raw bytes are its physical lines exactly as in the file (a quoted field may span
lines), so export writes the header and the kept rows back unchanged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.formats.base import Problems, ReadOptions, decode_text, refuse_utf16, too_big
from engine.formats.framing import framed_layout
from engine.formats.schemas import mapped, resolve_columns, to_record
from engine.records import Record


def _terminator(line: str) -> str:
    if line.endswith("\r\n"):
        return "\r\n"
    return line[-1] if line.endswith(("\n", "\r")) else ""


def read_csv(path: Path, data: bytes, file: str, opts: ReadOptions, problems: Problems,
             task: str) -> tuple[list[Record], dict[str, Any]]:
    refuse_utf16(data, file)
    encoding = "utf-8" if opts.encoding == "utf-8-sig" else opts.encoding
    text = decode_text(data, encoding, file)
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    consumed: list[str] = []

    def lines() -> Iterator[str]:
        for ln in io.StringIO(text, newline=""):
            consumed.append(ln)
            yield ln

    def take() -> str:
        chunk = "".join(consumed)
        consumed.clear()
        return chunk

    reader = csv.reader(lines(), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise InputError("file is empty", file=file) from None
    except csv.Error as exc:
        raise InputError(f"malformed CSV header: {exc}", file=file, line=1) from None
    header_chunk = take()
    columns = [h.lstrip("\ufeff") if i == 0 else h for i, h in enumerate(header)]
    convert = mapped(resolve_columns(columns, opts.column_map, file))

    records: list[Record] = []
    seps: list[str] = []
    prefix, pending, prev_term = header_chunk, "", ""
    line_no = reader.line_num + 1
    while True:
        start = line_no
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            # the reader cannot resynchronise after broken quoting: fatal even with --lenient
            raise InputError(f"malformed CSV: {exc}", file=file, line=start) from None
        chunk = take()
        line_no = reader.line_num + 1
        if not row:
            pending += chunk
            continue
        term = _terminator(chunk)
        body = chunk[: len(chunk) - len(term)]
        raw = body.encode(encoding)
        try:
            if len(raw) > opts.max_record_bytes:
                raise too_big(len(raw), opts.max_record_bytes, file, start)
            if len(row) != len(columns):
                raise InputError(f"row has {len(row)} fields, the header has {len(columns)}", file=file, line=start)
            fields = convert(dict(zip(columns, row, strict=True)), file, start, task)
        except InputError as err:
            problems.bad(err, body)
            continue
        if records:
            seps.append((prev_term + pending).encode(encoding))
        else:
            prefix += pending
        pending, prev_term = "", term
        records.append(to_record(fields, len(records), start, raw))
    layout = framed_layout("csv", prefix.encode(encoding), seps, (prev_term + pending).encode(encoding),
                           _terminator(header_chunk).encode() or b"\n", prev_term.encode(encoding),
                           delimiter=delimiter, columns=columns)
    return records, layout
