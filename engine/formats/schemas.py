"""Record schemas: how one parsed record (a dict) maps onto the canonical fields.

The same mapping serves every container: an Alpaca record is read the same way from a JSONL
line, an element of a JSON array or a Parquet row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from engine.errors import InputError
from engine.formats.base import printable
from engine.records import Record, label_space_field, text_field

# Canonical fields and the column names recognised for them (first match wins).
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "ID", "Id", "uid"),
    "task": ("task", "Task", "category"),
    "definition": ("definition", "Definition", "instruction", "Instruction", "system"),
    "input": ("input", "Input", "text", "sentence", "question", "prompt"),
    "output": ("output", "Output", "label", "answer", "response", "target", "completion"),
    "label_space": ("label_space",),
}
CANONICAL = tuple(COLUMN_ALIASES)

# What a schema gives for one record, in Record's field order after (ordinal, line, raw):
# task, definition, input, output, source_id, label_space
Fields = tuple[str, str, str, str, "str | None", "list[str] | None"]


def guess_schema(keys: Iterable[str]) -> str | None:
    """The record schema a set of keys suggests, or None."""
    keys = set(keys)
    if "Instances" in keys:
        return "sni-json"
    if "Instance" in keys or {"definition", "input", "output"} <= {k.lower() for k in keys}:
        return "sni-jsonl"
    if "messages" in keys:
        return "chat"
    if "instruction" in keys:
        return "alpaca"
    return None


def _one_output(value: object, name: str, file: str, line: int | None) -> object:
    # SNI keeps a list of acceptable outputs; the first is the gold one (as Tk-Instruct scores it)
    if type(value) is list:
        if not value:
            raise InputError("output list is empty", file=file, line=line, field=name)
        return value[0]
    return value


def sni_definition(value: object, name: str, file: str, line: int | None) -> str:
    if type(value) is list:  # SNI: a list of definition strings
        if len(value) == 1 and type(value[0]) is str:
            return value[0]
        return "\n".join(text_field(v, name, file=file, line=line) for v in value)
    return text_field(value, name, file=file, line=line)


def _id(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _task(value: object, name: str, default: str, file: str, line: int | None) -> str:
    if value is None:
        return default
    task = text_field(value, name, file=file, line=line)
    if not task.strip():
        # a task name keys query sets ('<task>::<variant>'): it cannot be blank
        raise InputError("task name is empty", file=file, line=line, field=name)
    return task


def sni_jsonl(obj: Mapping[str, Any], file: str, line: int | None, task: str) -> Fields:
    """``{id, Task, Definition, Instance{id, input, output}}`` (the paper's artifact), or the flat
    ``{id, task, definition, input, output}``; both may carry ``label_space``."""
    inst = obj.get("Instance")
    if type(inst) is dict and "label_space" not in obj:
        # fast path for the well-formed common case (most of the time of a 50k-line ingest)
        t, d, i, o = obj.get("Task"), obj.get("Definition"), inst.get("input"), inst.get("output")
        if type(o) is list and o:
            o = o[0]
        if type(d) is list and len(d) == 1:
            d = d[0]
        sid = obj.get("id", inst.get("id"))
        if type(t) is str and t.strip() and type(d) is str and type(i) is str and type(o) is str \
                and type(sid) is str and sid:
            return (t, d, i, o, sid, None)
    return _sni_jsonl_checked(obj, inst, file, line, task)


def _sni_jsonl_checked(obj: Mapping[str, Any], inst: Any, file: str, line: int | None, task: str) -> Fields:
    if inst is not None:
        if not isinstance(inst, dict):
            raise InputError("expected an object", file=file, line=line, field="Instance")
        src, prefix = inst, "Instance."
        source_id = _id(obj.get("id", inst.get("id")))
    else:
        src, prefix = obj, ""
        source_id = _id(obj.get("id"))
    task_value = obj.get("Task", obj.get("task"))
    definition = obj.get("Definition", obj.get("definition"))
    if definition is None:
        raise InputError("missing required field", file=file, line=line, field="Definition")
    return (
        _task(task_value, "Task", task, file, line),
        sni_definition(definition, "Definition", file, line),
        text_field(src.get("input"), prefix + "input", file=file, line=line),
        text_field(_one_output(src.get("output"), prefix + "output", file, line), prefix + "output",
                             file=file, line=line),
        source_id,
        label_space_field(obj.get("label_space"), file=file, line=line),
    )


def sni_instance(definition: str, task: str) -> Callable[[Mapping[str, Any], str, int | None, str], Fields]:
    """An element of an SNI task file's ``Instances``: ``{id, input, output[]}``."""

    def convert(obj: Mapping[str, Any], file: str, line: int | None, _task: str) -> Fields:
        return (
            task,
            definition,
            text_field(obj.get("input"), "input", file=file, line=line),
            text_field(_one_output(obj.get("output"), "output", file, line), "output",
                                 file=file, line=line),
            _id(obj.get("id")),
            None,
        )

    return convert


def alpaca(obj: Mapping[str, Any], file: str, line: int | None, task: str) -> Fields:
    """``{instruction, input?, output}``; ``id``, ``task`` and ``label_space`` when present."""
    task_value = obj.get("task")
    return (
        _task(task_value, "task", task, file, line),
        text_field(obj.get("instruction"), "instruction", file=file, line=line),
        text_field(obj.get("input"), "input", file=file, line=line, required=False),
        text_field(obj.get("output"), "output", file=file, line=line),
        _id(obj.get("id")),
        label_space_field(obj.get("label_space"), file=file, line=line),
    )


def chat(obj: Mapping[str, Any], file: str, line: int | None, task: str) -> Fields:
    """``{messages: [{role, content}]}``: system turns are the definition, the last assistant turn
    the output, and the turns before it the input (just the text when it is a single user turn)."""
    messages = obj.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InputError("expected a non-empty list of messages", file=file, line=line, field="messages")
    turns: list[tuple[str, str]] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise InputError("expected an object with 'role' and 'content'", file=file, line=line,
                             field=f"messages[{i}]")
        content = m.get("content")
        if type(content) is list:  # content parts: [{"type": "text", "text": ...}, ...]
            content = "".join(text_field(p.get("text") if isinstance(p, dict) else p,
                                         f"messages[{i}].content[{j}]", file=file, line=line)
                              for j, p in enumerate(content))
        turns.append((text_field(m.get("role"), f"messages[{i}].role", file=file, line=line),
                      text_field(content, f"messages[{i}].content", file=file, line=line)))
    last = max((i for i, (role, _) in enumerate(turns) if role == "assistant"), default=None)
    if last is None:
        raise InputError("no assistant turn (the output)", file=file, line=line, field="messages")
    system = [c for r, c in turns[:last] if r == "system"]
    before = [(r, c) for r, c in turns[:last] if r != "system"]
    if len(before) == 1 and before[0][0] == "user":
        text = before[0][1]
    else:
        text = "\n".join(f"{r}: {c}" for r, c in before)
    task_value = obj.get("task")
    return (
        _task(task_value, "task", task, file, line),
        "\n".join(system),
        text,
        turns[last][1],
        _id(obj.get("id")),
        label_space_field(obj.get("label_space"), file=file, line=line),
    )


def resolve_columns(columns: list[str], mapping: dict[str, str] | None, file: str) -> dict[str, str]:
    """canonical field -> column: the user's mapping, else recognised column names."""
    if mapping:
        unknown = sorted(set(mapping) - set(CANONICAL))
        if unknown:
            raise InputError(f"--csv-map names unknown field(s) {', '.join(map(printable, unknown))}; "
                             f"fields are {', '.join(CANONICAL)}", file=file)
        missing = [c for c in mapping.values() if c not in columns]
        if missing:
            raise InputError(
                f"--csv-map names column(s) not in the file: {', '.join(map(printable, missing))}", file=file,
                hint=f"the columns are: {', '.join(printable(c) for c in columns)}",
            )
        resolved = dict(mapping)
    else:
        resolved = {}
        for name, aliases in COLUMN_ALIASES.items():
            hit = next((a for a in aliases if a in columns), None)
            if hit is not None and hit not in resolved.values():
                resolved[name] = hit
    for required in ("input", "output"):
        if required not in resolved:
            raise InputError(
                f"no column for '{required}'", file=file, field=required,
                hint=f"the columns are: {', '.join(printable(c) for c in columns)}; "
                     "map them with --csv-map input=COLUMN,output=COLUMN[,definition=..,task=..,id=..]",
            )
    return resolved


def mapped(columns: dict[str, str], class_names: dict[str, list[str]] | None = None):
    """A converter for rows (dicts keyed by column) through a column mapping."""
    class_names = class_names or {}

    def convert(obj: Mapping[str, Any], file: str, line: int | None, task: str) -> Fields:
        def get(name: str) -> Any:
            col = columns.get(name)
            value = None if col is None else obj.get(col)
            if col in class_names and isinstance(value, int) and 0 <= value < len(class_names[col]):
                value = class_names[col][value]  # a datasets ClassLabel: the name, not the index
            return value

        task_value = get("task")
        return (
            _task(task_value, columns.get("task", "task"), task, file, line),
            text_field(get("definition"), columns.get("definition", "definition"),
                                     file=file, line=line, required=False),
            text_field(get("input"), columns["input"], file=file, line=line),
            text_field(get("output"), columns["output"], file=file, line=line),
            _id(get("id")),
            label_space_field(get("label_space"), file=file, line=line)
            or (class_names.get(columns["output"]) or None),
        )

    return convert


SCHEMAS = {"sni-jsonl": sni_jsonl, "alpaca": alpaca, "chat": chat}


def to_record(fields: Fields, ordinal: int, line: int | None, raw: bytes) -> Record:
    return Record(ordinal, line, raw, *fields)
