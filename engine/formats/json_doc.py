"""Whole-document JSON (an array of records, or an SNI task object) with each record's exact span.

The stdlib decoder's ``raw_decode`` parses one value at a given offset and says where it ends,
so walking the document value by value yields every record's source text, and everything
between records (brackets, commas, indentation) becomes the framing that export writes back.
"""

from __future__ import annotations

import json
import re
from typing import Any

import orjson

from engine.errors import InputError
from engine.formats.base import UTF8_BOM, decode_text, refuse_utf16

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class Doc:
    """A decoded JSON document and helpers to walk it with exact positions."""

    def __init__(self, data: bytes, file: str, encoding: str) -> None:
        refuse_utf16(data, file)
        self.file, self.encoding = file, encoding
        self.text = decode_text(data, "utf-8" if encoding == "utf-8-sig" else encoding, file)
        # a BOM decodes to U+FEFF, which stays in the framing (so it is written back) but is skipped
        self.start = 1 if data.startswith(UTF8_BOM) and self.text.startswith("\ufeff") else 0
        self._line_pos, self._line_no = 0, 1

    def ws(self, pos: int) -> int:
        return _WS.match(self.text, pos).end()  # type: ignore[union-attr]

    def value(self, pos: int) -> tuple[Any, int]:
        try:
            return _DECODER.raw_decode(self.text, pos)
        except json.JSONDecodeError as exc:
            raise self.error(exc) from None
        except RecursionError:
            raise InputError("JSON nested too deeply", file=self.file, line=self.line_of(pos)) from None

    def strict_value(self, start: int, end: int) -> Any:
        """The value at a span, parsed by orjson: it refuses what the stdlib lets through
        (NaN, unpaired surrogate escapes), so stored text is always valid Unicode."""
        try:
            return orjson.loads(self.text[start:end])
        except orjson.JSONDecodeError as exc:
            line = self.line_of(start + exc.pos)
            column = start + exc.pos - (self.text.rfind("\n", 0, start + exc.pos) + 1) + 1
            raise InputError(f"malformed JSON: {exc.msg}", file=self.file, line=line, column=column) from None

    def expect(self, pos: int, chars: str, what: str) -> int:
        pos = self.ws(pos)
        if pos >= len(self.text) or self.text[pos] not in chars:
            raise self.error(json.JSONDecodeError(f"Expecting {what}", self.text, pos))
        return pos

    def error(self, exc: json.JSONDecodeError) -> InputError:
        if exc.pos >= len(self.text.rstrip()):
            return InputError(f"unexpected end of file: {exc.msg}", file=self.file, line=exc.lineno,
                              column=exc.colno, hint="the file looks truncated (an interrupted copy?)")
        return InputError(f"malformed JSON: {exc.msg}", file=self.file, line=exc.lineno, column=exc.colno)

    def line_of(self, pos: int) -> int:
        # records are visited in order: count newlines from the last position asked about,
        # so a file with thousands of instances is not rescanned from the start each time
        if pos < self._line_pos:
            self._line_pos, self._line_no = 0, 1
        self._line_no += self.text.count("\n", self._line_pos, pos)
        self._line_pos = pos
        return self._line_no

    def encode(self, start: int, end: int) -> bytes:
        return self.text[start:end].encode(self.encoding if self.encoding != "utf-8-sig" else "utf-8")

    def array_spans(self, pos: int) -> tuple[list[tuple[int, int]], int, int]:
        """Spans of the elements of the array at ``pos``; also where its inside starts and ends."""
        pos = self.expect(pos, "[", "'[' (a JSON array)") + 1
        inner_start, spans = pos, []
        pos = self.ws(pos)
        if pos < len(self.text) and self.text[pos] == "]":
            return spans, inner_start, pos
        while True:
            start = self.ws(pos)
            _, end = self.value(start)
            spans.append((start, end))
            pos = self.expect(end, ",]", "',' or ']' after an array element")
            if self.text[pos] == "]":
                return spans, inner_start, pos
            pos += 1

    def object_members(self, pos: int) -> dict[str, tuple[int, int]]:
        """Spans of the values of the top-level object at ``pos``, by key."""
        pos = self.expect(pos, "{", "'{' (a JSON object)") + 1
        members: dict[str, tuple[int, int]] = {}
        pos = self.ws(pos)
        if pos < len(self.text) and self.text[pos] == "}":
            return members
        while True:
            pos = self.expect(pos, '"', "a property name in double quotes")
            key, pos = self.value(pos)
            pos = self.expect(pos, ":", "':' after a property name") + 1
            start = self.ws(pos)
            _, end = self.value(start)
            members[key] = (start, end)
            pos = self.expect(end, ",}", "',' or '}' after a property value")
            if self.text[pos] == "}":
                self.finish(pos + 1)
                return members
            pos += 1

    def finish(self, pos: int) -> None:
        pos = self.ws(pos)
        if pos < len(self.text):
            err = self.error(json.JSONDecodeError("Extra data after the JSON document", self.text, pos))
            err.hint = "one JSON value per line is JSON Lines: try --format auto (or sni-jsonl, alpaca, chat)"
            raise InputError(err.reason, file=err.file, line=err.line, column=err.column, hint=err.hint)
