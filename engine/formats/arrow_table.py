"""Parquet files and ``datasets`` ``save_to_disk`` directories (both Arrow tables underneath).

A row has no source bytes of its own, so its raw record is the row as compact JSON in column
order; export rebuilds a table with the stored Arrow schema (and ``datasets`` features), so the
rows read back from the exported file serialise to exactly the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO

import orjson

from engine.errors import InputError
from engine.formats.base import Problems, ReadOptions
from engine.formats.schemas import SCHEMAS, mapped, resolve_columns, to_record
from engine.records import Record


def _check_types(schema: Any, file: str) -> None:
    import pyarrow.types as t

    def ok(typ: Any) -> bool:
        if t.is_string(typ) or t.is_large_string(typ) or t.is_integer(typ) or t.is_floating(typ) \
                or t.is_boolean(typ) or t.is_null(typ):
            return True
        if t.is_list(typ) or t.is_large_list(typ):
            return ok(typ.value_type)
        if t.is_struct(typ):
            return all(ok(typ.field(i).type) for i in range(typ.num_fields))
        if t.is_dictionary(typ):
            return ok(typ.value_type)
        return False

    for f in schema:
        if not ok(f.type):
            raise InputError(
                f"column '{f.name}' has Arrow type {f.type}, which poison-tui cannot keep exactly",
                file=file, field=f.name,
                hint="supported: strings, numbers, booleans and lists/structs of them",
            )


def _converter(columns: list[str], opts: ReadOptions, file: str,
               class_names: dict[str, list[str]]) -> Callable[..., dict[str, Any]]:
    if opts.column_map is None:
        for schema, keys in (("sni-jsonl", ("Instance",)), ("chat", ("messages",))):
            if all(k in columns for k in keys):
                return SCHEMAS[schema]
    return mapped(resolve_columns(columns, opts.column_map, file), class_names)


def _rows_to_records(table: Any, file: str, opts: ReadOptions, problems: Problems, task: str,
                     class_names: dict[str, list[str]]) -> list[Record]:
    columns = table.column_names
    convert = _converter(columns, opts, file, class_names)
    records: list[Record] = []
    row_no = 0
    for batch in table.to_batches(max_chunksize=10_000):
        for row in batch.to_pylist():
            row_no += 1
            raw = orjson.dumps(row)
            try:
                if len(raw) > opts.max_record_bytes:
                    raise InputError(f"row {row_no}: record is {len(raw):,} bytes, over the limit of "
                                     f"{opts.max_record_bytes:,} bytes", file=file,
                                     hint="raise the limit with --max-record-mb")
                try:
                    fields = convert(row, file, None, task)
                except InputError as err:
                    raise InputError(f"row {row_no}: {err.reason}", file=file, field=err.field,
                                     hint=err.hint) from None
            except InputError as err:
                problems.bad(err, raw)
                continue
            records.append(to_record(fields, len(records), None, raw))
    return records


def read_parquet(path: Path, data: bytes, file: str, opts: ReadOptions, problems: Problems,
                 task: str) -> tuple[list[Record], dict[str, Any]]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise InputError(f"not a readable Parquet file: {exc}", file=file) from None
    _check_types(table.schema, file)
    records = _rows_to_records(table, file, opts, problems, task, {})
    schema = base64.b64encode(table.schema.serialize().to_pybytes()).decode("ascii")
    return records, {"container": "parquet", "arrow_schema": schema}


def hf_disk_sha256(path: Path) -> str:
    """Content hash of a save_to_disk directory: its files' names and bytes, in name order."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(str(f.relative_to(path)).encode() + b"\0")
        h.update(hashlib.sha256(f.read_bytes()).digest())
    return h.hexdigest()


def read_hf_disk(path: Path, file: str, opts: ReadOptions, problems: Problems,
                 task: str) -> tuple[list[Record], dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as exc:
        raise InputError(f"not a readable datasets directory: {exc}", file=file) from None
    if isinstance(ds, datasets.DatasetDict):
        raise InputError(
            f"this directory holds several splits ({', '.join(ds)}); ingest one of them", file=file,
            hint=f"pass the split's folder, e.g. {path / next(iter(ds))}",
        )
    table = ds.with_format("arrow")[:]  # honours an indices mapping, unlike ds.data
    _check_types(table.schema, file)
    class_names = {name: list(f.names) for name, f in ds.features.items()
                   if isinstance(f, datasets.ClassLabel)}
    records = _rows_to_records(table, file, opts, problems, task, class_names)
    return records, {"container": "hf-disk", "features": ds.features.to_dict()}


def write_parquet(layout: dict[str, Any], raws: Sequence[bytes], fh: BinaryIO) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.ipc.read_schema(pa.py_buffer(base64.b64decode(layout["arrow_schema"])))
    table = pa.Table.from_pylist([orjson.loads(r) for r in raws], schema=schema)
    pq.write_table(table, fh)


def write_hf_disk(layout: dict[str, Any], raws: Sequence[bytes], directory: Path) -> None:
    import datasets

    features = datasets.Features.from_dict(layout["features"])
    ds = datasets.Dataset.from_list([orjson.loads(r) for r in raws], features=features)
    # no progress bars on the terminal: export may run under the TUI
    was_enabled = not datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        ds.save_to_disk(str(directory))
    finally:
        if was_enabled:
            datasets.enable_progress_bars()
