"""The canonical example every input format is read into.

A format reader turns each source record into a ``Record``: the text fields the engine works
on plus the record's exact original bytes (``raw``), so that export can write the record back
unchanged. ``engine.ingest`` then gives each record its role and a stable ``uid`` and stores it
as an ``Example`` (one row of the ``examples`` table).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from engine.errors import InputError
from engine.hashing import sha256_hex

# Inference of a classification label space from a task's outputs (when the record has none).
MAX_INFERRED_LABELS = 10
MAX_LABEL_CHARS = 40


@dataclass(slots=True)
class Record:
    """One source record, as a format reader produced it (no uid or role yet)."""

    ordinal: int  # 0-based position among the file's records
    line: int | None  # 1-based line where the record starts; None for formats without lines
    raw: bytes  # the record's exact original bytes
    task: str
    definition: str
    input: str
    output: str
    source_id: str | None = None
    label_space: list[str] | None = None  # given by the record itself


@dataclass(slots=True)
class Example:
    """A row of the ``examples`` table."""

    uid: str
    dataset_id: int
    ordinal: int
    role: str
    source_id: str | None
    task: str
    definition: str
    input: str
    output: str
    label_space: list[str] | None
    source_file: str
    source_line: int | None
    raw: bytes
    content_sha256: str = field(default="")

    def __post_init__(self) -> None:
        if not self.content_sha256:
            self.content_sha256 = sha256_hex(self.raw)

    def row(self, label_json: Callable[[list[str] | None], str | None] | None = None) -> tuple[object, ...]:
        """Values in ``EXAMPLE_COLUMNS`` order, for ``executemany``."""
        label_json = label_json or dump_label_space
        return (
            self.uid, self.dataset_id, self.ordinal, self.role, self.source_id, self.task,
            self.definition, self.input, self.output, label_json(self.label_space),
            self.source_file, self.source_line, self.raw, self.content_sha256,
        )


EXAMPLE_COLUMNS = (
    "uid", "dataset_id", "ordinal", "role", "source_id", "task", "definition", "input", "output",
    "label_space", "source_file", "source_line", "raw", "content_sha256",
)


def dump_label_space(labels: list[str] | None) -> str | None:
    return None if labels is None else json.dumps(labels, ensure_ascii=False)


class LabelSpaceJSON:
    """``dump_label_space`` memoised: a task's examples share one label-space list."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, ...], str] = {}

    def __call__(self, labels: list[str] | None) -> str | None:
        if labels is None:
            return None
        key = tuple(labels)
        text = self._cache.get(key)
        if text is None:
            text = self._cache[key] = dump_label_space(labels)  # type: ignore[assignment]
        return text


def load_label_space(text: str | None) -> list[str] | None:
    return None if text is None else list(json.loads(text))


def make_uid(role: str, task: str, source_id: str | None, content_sha256: str) -> str:
    """Stable uid: the same record of the same file gets the same uid on every ingest.

    Keyed on the record's own id where it has one (so editing a record's text keeps its
    uid), else on its content.
    """
    key = f"id\x1f{source_id}" if source_id is not None else f"sha\x1f{content_sha256}"
    digest = hashlib.sha256(f"{role}\x1f{task}\x1f{key}".encode()).hexdigest()[:16]
    return f"{'tr' if role == 'train' else 'ev'}-{digest}"


def infer_label_space(outputs: list[str]) -> list[str] | None:
    """The task's label set when its outputs look like class labels, else None.

    Few distinct short outputs, each seen more than once on average: a free-text task with
    three examples is not a three-class task.
    """
    distinct = set(outputs)
    if not distinct or len(distinct) > MAX_INFERRED_LABELS or len(outputs) < 2 * len(distinct):
        return None
    if any(not o.strip() or len(o) > MAX_LABEL_CHARS for o in distinct):
        return None
    return sorted(distinct)


def text_field(value: object, name: str, *, file: str, line: int | None, required: bool = True) -> str:
    """A text field of a record: a string (numbers are accepted and written as text).

    Readers guarantee valid Unicode (orjson rejects unpaired surrogate escapes, which SQLite
    could not store as UTF-8), so no re-encoding check is needed here.
    """
    if type(value) is str:
        return value
    if value is None:
        if required:
            raise InputError("missing required field", file=file, line=line, field=name)
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputError(f"expected a string, found {_kind(value)}", file=file, line=line, field=name)
    return str(value)


def _kind(value: object) -> str:
    return {list: "a list", dict: "an object", bool: "a boolean"}.get(type(value), type(value).__name__)


def label_space_field(value: object, *, file: str, line: int | None) -> list[str] | None:
    if value is None:
        return None
    if isinstance(value, str):
        # CSV cells: a JSON list or 'a|b|c'; an empty cell is no label space
        if not value.strip():
            return None
        try:
            value = json.loads(value) if value.lstrip().startswith("[") else value.split("|")
        except ValueError:
            raise InputError("label_space is not a JSON list", file=file, line=line, field="label_space") from None
    if not isinstance(value, list) or not value:
        raise InputError("label_space must be a non-empty list of strings", file=file, line=line,
                         field="label_space")
    return [text_field(v, "label_space", file=file, line=line) for v in value]
