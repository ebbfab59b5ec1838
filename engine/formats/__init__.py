"""Input formats: detection, reading into ``Record``s, and writing records back (export).

============  ==========================================================================
format        what
============  ==========================================================================
sni-json      a Super-NaturalInstructions task file (``Definition``, ``Instances[]``)
sni-jsonl     ``{id, Task, Definition, Instance{input, output}}`` per line (also flat
              ``{id, task, definition, input, output}``; a JSON array of them is read too)
alpaca        ``{instruction, input, output}`` as JSONL or a JSON array
chat          ``{messages: [{role, content}]}`` as JSONL or a JSON array
parquet       a Parquet file; columns recognised by name or mapped with ``--csv-map``
csv           CSV (``.tsv``: tab separated) with a header; columns as for parquet
hf-disk       a ``datasets`` ``save_to_disk`` directory (one split)
============  ==========================================================================

``read_dataset(path, fmt, options)`` returns the records and the dataset's ``layout``;
``write_records(dataset_row, raws, dest)`` rebuilds a file of the same format from raw records.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from engine.errors import InputError, UserError
from engine.formats.base import (
    UTF8_BOM,
    Problems,
    ReadOptions,
    ReadResult,
    Skipped,
    check_encoding,
    printable,
    refuse_utf16,
    too_big,
)
from engine.formats.framing import framed_layout, write_framed
from engine.formats.json_doc import Doc
from engine.formats.jsonl import read_jsonl
from engine.formats.schemas import SCHEMAS, Fields, guess_schema, sni_definition, sni_instance, to_record
from engine.hashing import sha256_hex
from engine.records import Record

__all__ = [
    "FORMATS", "ReadOptions", "ReadResult", "Skipped", "check_encoding", "detect_format",
    "export_name", "read_dataset", "write_records",
]

FORMATS = ("sni-json", "sni-jsonl", "alpaca", "chat", "parquet", "csv", "hf-disk")
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv", ".tsv", ".parquet", ".pq")
_SNIFF_BYTES = 1 << 20


def is_hf_disk(path: Path) -> bool:
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


def detect_format(path: Path, data: bytes | None = None, encoding: str = "utf-8") -> str:
    """Guess the format from the name and the first record; ``--format`` overrides it."""
    file = str(path)
    if path.is_dir():
        if is_hf_disk(path):
            return "hf-disk"
        raise InputError("a folder, but not a datasets save_to_disk directory (no state.json)", file=file)
    if path.suffix.lower() in (".parquet", ".pq"):
        return "parquet"
    if path.suffix.lower() in (".csv", ".tsv"):
        return "csv"
    if data is None:
        with open(path, "rb") as fh:
            data = fh.read(_SNIFF_BYTES)
    if data.startswith(b"PAR1"):
        return "parquet"
    refuse_utf16(data, file)
    body = data[len(UTF8_BOM):] if data.startswith(UTF8_BOM) else data
    stripped = body.lstrip()
    if not stripped:
        raise InputError("file is empty", file=file)
    first_line = stripped.split(b"\n", 1)[0].strip()
    if stripped[:1] == b"{":
        try:
            obj = orjson.loads(first_line.decode(encoding, "replace"))
        except orjson.JSONDecodeError:
            obj = None
        if obj is None and (first_line == b"{" or not first_line.endswith(b"}")):
            return "sni-json"  # a pretty-printed object: an SNI task file
        schema = guess_schema(obj) if isinstance(obj, dict) else "sni-jsonl"
        if schema is None:
            raise _unknown(file, obj)
        return schema
    if stripped[:1] == b"[":
        try:
            value, _ = json.JSONDecoder().raw_decode(stripped[1:].decode(encoding, "replace").lstrip())
        except (ValueError, RecursionError):
            return "alpaca"  # the reader will say exactly what is wrong
        schema = guess_schema(value) if isinstance(value, dict) else None
        if schema is None or schema == "sni-json":
            raise _unknown(file, value)
        return schema
    raise InputError(
        "cannot tell the format: the file is neither JSON, JSONL, CSV nor Parquet", file=file,
        hint=f"pass --format ({', '.join(FORMATS)})",
    )


def _unknown(file: str, obj: object) -> InputError:
    keys = ", ".join(printable(str(k), 40) for k in list(obj)[:12]) if isinstance(obj, dict) else "(not an object)"
    return InputError(
        f"cannot tell the format: the first record has keys {keys}", file=file,
        hint=f"pass --format ({', '.join(FORMATS)}); for columns like text/label use a CSV or "
             "Parquet file with --csv-map",
    )


def default_task(path: Path) -> str:
    """Records without a task of their own belong to one named after the file."""
    return (path.name.split(".")[0] if path.is_file() else path.name) or path.stem or "data"


def read_dataset(path: Path, fmt: str = "auto", opts: ReadOptions | None = None) -> ReadResult:
    """Read one file (or save_to_disk directory) into records. Raises InputError for bad input."""
    path = Path(path)
    opts = opts or ReadOptions()
    file = str(path)
    if not path.exists():
        raise UserError(f"{file}: no such file or directory")
    if fmt not in ("auto", *FORMATS):
        raise UserError(f"unknown format '{printable(fmt)}'; choose one of auto, {', '.join(FORMATS)}")
    opts = ReadOptions(check_encoding(opts.encoding), opts.lenient, opts.max_record_bytes, opts.column_map)
    problems = Problems(file, opts.lenient)
    task = default_task(path)
    if fmt == "hf-disk" or (fmt == "auto" and path.is_dir()):
        from engine.formats.arrow_table import hf_disk_sha256, read_hf_disk

        if not is_hf_disk(path):
            raise InputError("not a datasets save_to_disk directory (no state.json)", file=file)
        records, layout = read_hf_disk(path, file, opts, problems, task)
        fmt, sha = "hf-disk", hf_disk_sha256(path)
    else:
        if path.is_dir():
            raise InputError(f"a folder cannot be read as {fmt}", file=file)
        data = path.read_bytes()
        body = data[len(UTF8_BOM):] if data.startswith(UTF8_BOM) else data
        if not body or body.isspace():
            raise InputError("file is empty", file=file)
        if fmt == "auto":
            fmt = detect_format(path, data[:_SNIFF_BYTES], opts.encoding)
        records, layout = _read_file(path, data, fmt, file, opts, problems, task)
        sha = sha256_hex(data)
    if not records:
        if problems.skipped:
            first = problems.skipped[0]
            where = f"line {first.line}: " if first.line is not None else ""
            raise InputError(f"no records could be read; all {len(problems.skipped)} were bad, the first "
                             f"({where}{first.reason})", file=file)
        raise InputError("the file holds no records", file=file)
    return ReadResult(fmt, records, layout, sha, problems.skipped)


def _read_file(path: Path, data: bytes, fmt: str, file: str, opts: ReadOptions, problems: Problems,
               task: str) -> tuple[list[Record], dict[str, Any]]:
    if fmt == "csv":
        from engine.formats.csv_table import read_csv

        return read_csv(path, data, file, opts, problems, task)
    if fmt == "parquet":
        from engine.formats.arrow_table import read_parquet

        return read_parquet(path, data, file, opts, problems, task)
    if fmt == "sni-json":
        return _read_sni_task(data, file, opts, problems, task)
    schema = SCHEMAS[fmt]
    body = data[len(UTF8_BOM):] if data.startswith(UTF8_BOM) else data
    if body.lstrip()[:1] == b"[":
        return _read_json_array(data, file, opts, problems, task, fmt)

    def convert(obj: dict[str, Any], line: int, raw: bytes, ordinal: int) -> Record:
        try:
            return Record(ordinal, line, raw, *schema(obj, file, line, task))
        except InputError as err:
            raise _with_hint(err, obj, fmt) from None

    return read_jsonl(data, file, opts, problems, convert)


def _apply(schema: Any, fmt: str, obj: dict[str, Any], file: str, line: int | None, task: str) -> Fields:
    try:
        return schema(obj, file, line, task)
    except InputError as err:
        raise _with_hint(err, obj, fmt) from None


def _with_hint(err: InputError, obj: dict[str, Any], fmt: str) -> InputError:
    """A field missing because --format was wrong: say which format the record looks like."""
    guess = guess_schema(obj)
    if err.field is None or guess is None or guess == fmt:
        return err
    return InputError(err.reason, file=err.file, line=err.line, column=err.column, field=err.field,
                      hint=f"this record looks like {guess}: try --format {guess} (or --format auto)")


def _elements(doc: Doc, spans: list[tuple[int, int]], inner_start: int, opts: ReadOptions,
              problems: Problems, make: Any, container: str) -> tuple[list[Record], dict[str, Any]]:
    """Records from array elements, and the framing around them."""
    records: list[Record] = []
    seps: list[bytes] = []
    prev_end = inner_start
    for start, end in spans:
        line = doc.line_of(start)
        raw = doc.encode(start, end)
        before, prev_end = prev_end, end
        try:
            if len(raw) > opts.max_record_bytes:
                raise too_big(len(raw), opts.max_record_bytes, doc.file, line)
            value = doc.strict_value(start, end)
            if not isinstance(value, dict):
                raise InputError("expected a JSON object", file=doc.file, line=line)
            fields = make(value, line)
        except InputError as err:
            problems.bad(err, raw)
            continue
        if records:
            # the separator right before this element: clean even when the one before was skipped
            seps.append(doc.encode(before, start))
        records.append(to_record(fields, len(records), line, raw))
    first = spans[0][0] if spans else inner_start
    last = spans[-1][1] if spans else inner_start
    # joins records when the file had only one: a comma plus the first element's indentation
    default = b"," + doc.encode(inner_start, first) if spans else b", "
    return records, framed_layout(container, doc.encode(0, first), seps, doc.encode(last, len(doc.text)), default)


def _read_json_array(data: bytes, file: str, opts: ReadOptions, problems: Problems, task: str,
                     fmt: str) -> tuple[list[Record], dict[str, Any]]:
    doc = Doc(data, file, opts.encoding)
    spans, inner_start, inner_end = doc.array_spans(doc.start)
    doc.finish(inner_end + 1)
    schema = SCHEMAS[fmt]
    return _elements(doc, spans, inner_start, opts, problems,
                     lambda obj, line: _apply(schema, fmt, obj, file, line, task), "json")


def _read_sni_task(data: bytes, file: str, opts: ReadOptions, problems: Problems,
                   task: str) -> tuple[list[Record], dict[str, Any]]:
    doc = Doc(data, file, opts.encoding)
    members = doc.object_members(doc.start)
    if "Instances" not in members:
        raise InputError("missing required field", file=file, line=1, field="Instances",
                         hint="an SNI task file has Definition and Instances; "
                              "for one instance per line use --format sni-jsonl")
    if "Definition" not in members:
        raise InputError("missing required field", file=file, line=1, field="Definition")
    definition, _ = doc.value(members["Definition"][0])
    definition_text = sni_definition(definition, "Definition", file, doc.line_of(members["Definition"][0]))
    spans, inner_start, _ = doc.array_spans(members["Instances"][0])
    convert = sni_instance(definition_text, task)
    return _elements(doc, spans, inner_start, opts, problems,
                     lambda obj, line: convert(obj, file, line, task), "sni-json")


def write_records(dataset_row: Mapping[str, Any], raws: Sequence[bytes], dest: BinaryIO | Path,
                  *, ordinals: Sequence[int] | None = None) -> None:
    """Write ``raws`` (records of the dataset, in order) as a file of the dataset's format.

    ``dest`` is a binary file object, except for ``hf-disk`` where it is the directory to create.
    Text formats come back byte for byte when every record is kept; pass ``ordinals`` (the
    records' ``examples.ordinal``) so irregular separators survive around removed records.
    """
    layout = dataset_row["layout"]
    if isinstance(layout, str):
        layout = json.loads(layout)
    container = layout["container"]
    if container == "hf-disk":
        from engine.formats.arrow_table import write_hf_disk

        if not isinstance(dest, (str, Path)):
            raise TypeError("hf-disk datasets are written to a directory: pass its Path as dest")
        write_hf_disk(layout, raws, Path(dest))
        return
    if isinstance(dest, (str, Path)):
        raise TypeError("pass a binary file object as dest")
    if container == "parquet":
        from engine.formats.arrow_table import write_parquet

        write_parquet(layout, raws, dest)
        return
    write_framed(layout, raws, dest, ordinals)


def export_name(dataset_row: Mapping[str, Any]) -> str:
    """The file (or directory) name an export of this dataset should use: the source's name."""
    return Path(dataset_row["path"]).name
