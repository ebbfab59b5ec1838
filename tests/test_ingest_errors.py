"""Bad input: each case gets a specific, located message (never a traceback), strict by default."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ingest_fixtures import alpaca_records, csv_text, sni_jsonl_lines, sni_task_json, write_jsonl

from engine.errors import InputError, UserError
from engine.formats import ReadOptions, read_dataset
from poison_tui.cli import main


def lines_file(tmp_path: Path, lines: list[bytes], name: str = "train.jsonl", final: bool = True) -> Path:
    path = tmp_path / name
    path.write_bytes(b"\n".join(lines) + (b"\n" if final else b""))
    return path


def good(i: int = 0) -> bytes:
    return json.dumps(sni_jsonl_lines(n=6)[i]).encode()


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_malformed_jsonl_gives_file_line_column_and_expectation(tmp_path: Path) -> None:
    bad = b'{"id": "x" "Task": "t"}'
    path = lines_file(tmp_path, [good(0), good(1), bad, good(2)])
    with pytest.raises(InputError) as exc:
        read_dataset(path)
    err = exc.value
    assert (err.file, err.line, err.column) == (str(path), 3, 12)
    assert str(err).startswith(f"{path}:3:12: malformed JSON: Expecting ',' delimiter")


def test_malformed_sni_task_json_is_located(tmp_path: Path) -> None:
    path = sni_task_json(tmp_path / "task1_t.json")
    text = path.read_text().replace('"output": [\n                "negative"', '"output": [\n                "negative",', 1)
    path.write_text(text)
    with pytest.raises(InputError) as exc:
        read_dataset(path)
    comma_line = text[: text.index('"negative",')].count("\n") + 1
    assert exc.value.line == comma_line + 1  # the ']' where another value was expected
    assert "malformed JSON: Expecting value" in str(exc.value)


def test_missing_field_names_field_and_line(tmp_path: Path) -> None:
    rec = sni_jsonl_lines(n=4)[3]
    del rec["Instance"]["output"]
    path = lines_file(tmp_path, [good(0), good(1), good(2), json.dumps(rec).encode()])
    with pytest.raises(InputError) as exc:
        read_dataset(path)
    assert (exc.value.line, exc.value.field) == (4, "Instance.output")
    assert str(exc.value) == f"{path}:4: missing required field (field 'Instance.output')"


def test_wrong_type_is_reported(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "x", "input": {"a": 1}, "output": "y"}])
    with pytest.raises(InputError, match=r"a.jsonl:1: expected a string, found an object \(field 'input'\)"):
        read_dataset(path)


@pytest.mark.parametrize("content", [b"", b"   \n\n", b"\xef\xbb\xbf"])
def test_empty_file(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "e.jsonl"
    path.write_bytes(content)
    with pytest.raises(InputError, match="file is empty"):
        read_dataset(path)


def test_empty_csv_and_header_only_csv(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_bytes(b"input,output\n")
    with pytest.raises(InputError, match="holds no records"):
        read_dataset(tmp_path / "h.csv")


def test_wrong_format_guess_suggests_the_right_one(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", sni_jsonl_lines())
    with pytest.raises(InputError) as exc:
        read_dataset(path, "alpaca")
    assert exc.value.field == "instruction" and exc.value.line == 1
    assert "try --format sni-jsonl" in str(exc.value)
    with pytest.raises(InputError, match=r":2:1: malformed JSON: Extra data") as exc:
        read_dataset(path, "sni-json")
    assert "try --format auto" in str(exc.value)


def test_unrecognised_records_ask_for_format(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "x.jsonl", [{"text": "hi", "label": 1}])
    with pytest.raises(InputError, match=r"cannot tell the format: the first record has keys text, label"):
        read_dataset(path)


def test_non_utf8_bytes_suggest_encoding(tmp_path: Path) -> None:
    path = lines_file(tmp_path, [json.dumps(alpaca_records(1)[0]).encode(),
                                 b'{"instruction": "x", "input": "caf\xe9", "output": "y"}'], name="a.jsonl")
    with pytest.raises(InputError) as exc:
        read_dataset(path, "alpaca")
    assert (exc.value.line, exc.value.column) == (2, 35)
    assert "byte 0xe9 is not valid utf-8" in str(exc.value) and "--encoding latin-1" in str(exc.value)


def test_non_utf8_in_csv_is_located(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_bytes(b"input,output\nok,yes\ncaf\xe9,no\n")
    with pytest.raises(InputError) as exc:
        read_dataset(tmp_path / "c.csv")
    assert (exc.value.line, exc.value.column) == (3, 4) and "--encoding" in str(exc.value)


def test_utf16_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "u.jsonl"
    path.write_bytes(json.dumps(alpaca_records(1)[0]).encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        read_dataset(path, "alpaca")
    with pytest.raises(UserError, match="convert the file to UTF-8"):
        read_dataset(path, "alpaca", ReadOptions(encoding="utf-16"))


def test_enormous_record_hits_the_limit(tmp_path: Path) -> None:
    big = {"instruction": "x", "input": "y" * 5000, "output": "z"}
    path = write_jsonl(tmp_path / "big.jsonl", [alpaca_records(1)[0], big])
    with pytest.raises(InputError) as exc:
        read_dataset(path, "auto", ReadOptions(max_record_bytes=1000))
    assert exc.value.line == 2 and "over the limit of 1,000 bytes" in str(exc.value)
    assert "--max-record-mb" in str(exc.value)
    assert len(read_dataset(path, "auto", ReadOptions(max_record_bytes=10_000)).records) == 2


def test_enormous_array_element_hits_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(json.dumps([*alpaca_records(2), {"instruction": "x", "input": "y" * 3000, "output": "z"}]))
    with pytest.raises(InputError, match="over the limit"):
        read_dataset(path, "auto", ReadOptions(max_record_bytes=1000))


def test_truncated_last_line(tmp_path: Path) -> None:
    path = lines_file(tmp_path, [good(0), good(1), good(2)[:40]], final=False)
    with pytest.raises(InputError) as exc:
        read_dataset(path)
    assert exc.value.line == 3 and "truncated record at end of file" in str(exc.value)
    assert "cut short" in str(exc.value)


def test_truncated_json_document(tmp_path: Path) -> None:
    path = sni_task_json(tmp_path / "task1_t.json")
    path.write_bytes(path.read_bytes()[:-200])
    with pytest.raises(InputError, match="unexpected end of file") as exc:
        read_dataset(path)
    assert "looks truncated" in str(exc.value)


def test_non_object_line(tmp_path: Path) -> None:
    path = lines_file(tmp_path, [good(0), b"[1, 2]"])
    with pytest.raises(InputError, match=r":2: expected a JSON object, found an array"):
        read_dataset(path)


def test_unpaired_surrogate_escape_is_rejected(tmp_path: Path) -> None:
    rec = b'{"instruction": "x", "input": "bad \\ud800 text", "output": "y"}'
    for path in (lines_file(tmp_path, [rec], name="s.jsonl"), tmp_path / "s.json"):
        if path.suffix == ".json":
            path.write_bytes(b"[" + rec + b"]")
        with pytest.raises(InputError, match="surrogate"):
            read_dataset(path, "alpaca")


def test_csv_columns_missing_lists_the_header(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_bytes(b"review,stars\ngood,5\n")
    with pytest.raises(InputError, match="no column for 'input'") as exc:
        read_dataset(tmp_path / "c.csv")
    assert "the columns are: review, stars" in str(exc.value) and "--csv-map" in str(exc.value)
    with pytest.raises(InputError, match="not in the file: text"):
        read_dataset(tmp_path / "c.csv", "csv", ReadOptions(column_map={"input": "text", "output": "stars"}))


def test_csv_row_with_wrong_field_count(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_bytes(csv_text(3).encode() + b"r9,a,b,c\r\n")
    with pytest.raises(InputError, match=r":5: row has 4 fields, the header has 3"):
        read_dataset(tmp_path / "c.csv")


def test_lenient_skips_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = sni_jsonl_lines(n=1)[0]
    del missing["Instance"]["input"]
    path = lines_file(tmp_path, [good(0), b"{not json", good(1), json.dumps(missing).encode(), good(2)])
    ws = tmp_path / "ws"
    rc, out, err = cli(capsys, "ingest", str(path), "--workspace", str(ws))
    assert rc == 2 and ":2:" in err and not ws.exists()
    rc, out, err = cli(capsys, "ingest", str(path), "--workspace", str(ws), "--lenient")
    assert rc == 0
    assert "--lenient skipped 2 bad record(s)" in err and "ingest-skipped.jsonl" in err
    report = [json.loads(x) for x in (ws / "ingest-skipped.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(":")[0]) for r in report] == [
        (2, "malformed JSON"), (4, "missing required field (field 'Instance.input')")]
    assert report[0]["excerpt"] == "{not json"
    rc, out, _ = cli(capsys, "info", str(ws), "--json")
    assert json.loads(out)["datasets"][0]["n_records"] == 3


def test_lenient_with_nothing_readable_still_fails(tmp_path: Path) -> None:
    path = lines_file(tmp_path, [b"{bad", b"{worse"])
    with pytest.raises(InputError, match="no records could be read"):
        read_dataset(path, "alpaca", ReadOptions(lenient=True))


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda p: lines_file(p, [good(0), b'{"id": 1,,}']), ":2:10: malformed JSON"),
        (lambda p: lines_file(p, [b'{"instruction": "\xff", "output": "y"}']), "not valid utf-8"),
        (lambda p: lines_file(p, [b"\xff\xfe\x00junk"]), "the file is UTF-16"),
        (lambda p: (p / "train.jsonl").write_bytes(b"") and None, "file is empty"),
        (lambda p: None, "no such file or directory"),
    ],
)
def test_cli_reports_bad_input_without_traceback(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 setup, message: str) -> None:
    setup(tmp_path)
    rc, out, err = cli(capsys, "ingest", str(tmp_path / "train.jsonl"))
    assert rc == 2
    errors = [ln for ln in err.splitlines() if not ln.startswith(("[read]", "  hint"))]
    assert errors[0].startswith("poison-tui ingest: error: ") and message in errors[0]
    assert "Traceback" not in err and out == ""
    assert not (tmp_path / "train.poison").exists()


def test_cli_bad_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", sni_jsonl_lines())
    rc, _, err = cli(capsys, "ingest", str(path), "--encoding", "klingon")
    assert rc == 2 and "unknown encoding 'klingon'" in err
    rc, _, err = cli(capsys, "ingest", str(path), "--csv-map", "input")
    assert rc == 2 and "expected FIELD=COLUMN" in err
    rc, _, err = cli(capsys, "ingest", str(path), "--max-record-mb", "0.0001")
    assert rc == 2 and "over the limit of 100 bytes" in err


def test_blank_task_name_is_refused(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", [{**alpaca_records(1)[0], "task": "  "}])
    with pytest.raises(InputError, match=r":1: task name is empty \(field 'task'\)"):
        read_dataset(path)


def test_csv_blank_cells(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_bytes(b"id,input,output,label_space\n,a,x,\n,b,y,x|y\n")
    first, second = read_dataset(tmp_path / "c.csv").records
    assert (first.source_id, first.label_space) == (None, None)
    assert second.label_space == ["x", "y"]
