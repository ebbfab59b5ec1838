"""Every input format: detection, canonical fields, and raw -> canonical -> raw byte equality."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from ingest_fixtures import (
    DEFINITION,
    REVIEWS,
    TASK,
    alpaca_records,
    chat_records,
    csv_text,
    sni_jsonl_lines,
    sni_task_json,
    table_rows,
    write_jsonl,
)

from engine.formats import ReadOptions, detect_format, read_dataset, write_records


def rebuild(result, keep=None) -> bytes:
    records = result.records if keep is None else [result.records[i] for i in keep]
    buf = io.BytesIO()
    write_records({"layout": json.dumps(result.layout)}, [r.raw for r in records], buf,
                  ordinals=[r.ordinal for r in records])
    return buf.getvalue()


@pytest.mark.parametrize(
    ("newline", "final", "bom"),
    [("\n", True, False), ("\r\n", True, False), ("\n", False, False), ("\r\n", False, True)],
)
def test_sni_jsonl_round_trips_byte_for_byte(tmp_path: Path, newline: str, final: bool, bom: bool) -> None:
    path = write_jsonl(tmp_path / "train.jsonl", sni_jsonl_lines(), newline=newline, final=final, bom=bom)
    result = read_dataset(path)
    assert result.format == "sni-jsonl"
    assert [r.line for r in result.records] == [1, 2, 3, 4, 5, 6]
    first = result.records[0]
    assert (first.task, first.definition, first.input, first.output, first.source_id) == (
        TASK, DEFINITION, REVIEWS[0][0], "positive", f"{TASK}-0")
    assert first.raw == json.dumps(sni_jsonl_lines()[0]).encode()  # no BOM, no line ending
    assert rebuild(result) == path.read_bytes()


def test_jsonl_blank_lines_and_mixed_endings_survive(tmp_path: Path) -> None:
    lines = [json.dumps(r) for r in sni_jsonl_lines(n=4)]
    data = f"\n{lines[0]}\r\n\n{lines[1]}\n{lines[2]}\r\n{lines[3]}\n\n".encode()
    path = tmp_path / "t.jsonl"
    path.write_bytes(data)
    result = read_dataset(path)
    assert [r.line for r in result.records] == [2, 4, 5, 6]
    assert rebuild(result) == data


def test_jsonl_removal_keeps_the_remaining_records_verbatim(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "t.jsonl", sni_jsonl_lines(), newline="\r\n")
    lines = path.read_bytes().split(b"\r\n")
    out = rebuild(read_dataset(path), keep=[0, 2, 5])
    assert out == b"\r\n".join([lines[0], lines[2], lines[5]]) + b"\r\n"


def test_flat_sni_jsonl_with_label_space(tmp_path: Path) -> None:
    rec = {"id": "x1", "task": "t1", "definition": "D", "input": "I", "output": "yes", "label_space": ["yes", "no"]}
    path = write_jsonl(tmp_path / "flat.jsonl", [rec])
    [r] = read_dataset(path).records
    assert (r.task, r.definition, r.input, r.output, r.label_space) == ("t1", "D", "I", "yes", ["yes", "no"])


@pytest.mark.parametrize("indent", [4, None])
def test_sni_task_json(tmp_path: Path, indent: int | None) -> None:
    path = sni_task_json(tmp_path / "task901_movie_polarity.json", indent=indent)
    result = read_dataset(path)
    assert result.format == "sni-json"
    r = result.records[1]
    assert (r.task, r.definition, r.input, r.output, r.source_id) == (
        "task901_movie_polarity", DEFINITION, REVIEWS[1][0], "negative", "task901_movie_polarity-1")
    assert json.loads(r.raw) == json.loads(path.read_text())["Instances"][1]
    if indent:
        text = path.read_text()
        assert r.line == text[: text.index('"task901_movie_polarity-1"')].count("\n")  # the '{' line above
    assert rebuild(result) == path.read_bytes()
    # removing instances keeps the header (Definition, Positive Examples, license) and valid JSON
    kept = json.loads(rebuild(result, keep=[0, 3]))
    assert [i["id"] for i in kept["Instances"]] == ["task901_movie_polarity-0", "task901_movie_polarity-3"]
    assert kept["Positive Examples"] and kept["Instance License"] == ["CC0"]


def test_alpaca_json_array_and_jsonl(tmp_path: Path) -> None:
    arr = tmp_path / "alpaca.json"
    arr.write_text(json.dumps(alpaca_records(), indent=2, ensure_ascii=False), encoding="utf-8")
    lines = write_jsonl(tmp_path / "alpaca.jsonl", alpaca_records())
    for path in (arr, lines):
        result = read_dataset(path)
        assert result.format == "alpaca"
        r = result.records[5]
        assert (r.task, r.definition, r.input, r.output) == ("alpaca", DEFINITION, REVIEWS[5][0], "negative")
        assert rebuild(result) == path.read_bytes()
    assert json.loads(rebuild(read_dataset(arr), keep=[1, 4])) == [alpaca_records()[1], alpaca_records()[4]]


def test_alpaca_input_is_optional(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "a.jsonl", [{"instruction": "Say hi", "output": "hi"}])
    [r] = read_dataset(path).records
    assert (r.definition, r.input, r.output) == ("Say hi", "", "hi")


def test_chat_jsonl(tmp_path: Path) -> None:
    multi = {"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                          {"role": "user", "content": "Rate: great film"},
                          {"role": "assistant", "content": "positive"}]}
    path = write_jsonl(tmp_path / "chat.jsonl", [*chat_records(2), multi])
    result = read_dataset(path)
    assert result.format == "chat"
    a, _, m = result.records
    assert (a.definition, a.input, a.output, a.source_id) == (DEFINITION, REVIEWS[0][0], "positive", "c0")
    assert m.input == "user: Hi\nassistant: Hello\nuser: Rate: great film" and m.output == "positive"
    assert rebuild(result) == path.read_bytes()


def test_chat_content_parts_and_missing_assistant(tmp_path: Path) -> None:
    parts = {"messages": [{"role": "user", "content": [{"type": "text", "text": "Rate: "},
                                                       {"type": "text", "text": "dull"}]},
                          {"role": "assistant", "content": "negative"}]}
    [r] = read_dataset(write_jsonl(tmp_path / "p.jsonl", [parts])).records
    assert (r.input, r.output) == ("Rate: dull", "negative")
    with pytest.raises(Exception, match=r"no assistant turn \(the output\) \(field 'messages'\)"):
        read_dataset(write_jsonl(tmp_path / "q.jsonl", [{"messages": [{"role": "user", "content": "hi"}]}]))


def test_csv_with_recognised_and_mapped_columns(tmp_path: Path) -> None:
    path = tmp_path / "reviews.csv"
    path.write_bytes(csv_text().encode())
    result = read_dataset(path)
    assert result.format == "csv"
    assert [r.source_id for r in result.records] == [f"r{i}" for i in range(6)]
    assert result.records[1].input == REVIEWS[1][0] and result.records[1].output == "negative"
    assert rebuild(result) == path.read_bytes()
    assert rebuild(result, keep=[1]) == csv_text().split("\r\n")[0].encode() + b"\r\n" + \
        csv_text().split("\r\n")[2].encode() + b"\r\n"
    mapped = read_dataset(path, "csv", ReadOptions(column_map={"input": "label", "output": "text", "task": "id"}))
    assert (mapped.records[0].input, mapped.records[0].task) == ("positive", "r0")


def test_csv_quoted_newlines_keep_their_bytes(tmp_path: Path) -> None:
    data = b'text,label\n"two\nlines, with comma",pos\nplain,neg'
    path = tmp_path / "q.csv"
    path.write_bytes(data)
    result = read_dataset(path)
    assert [r.input for r in result.records] == ["two\nlines, with comma", "plain"]
    assert [r.line for r in result.records] == [2, 4]
    assert result.records[0].raw == b'"two\nlines, with comma",pos'
    assert rebuild(result) == data


def test_tsv(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_bytes(b"input\toutput\nhello, world\tyes\n")
    result = read_dataset(path)
    assert result.records[0].input == "hello, world" and rebuild(result) == path.read_bytes()


def test_parquet_rows_round_trip_with_schema(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(table_rows())
    pq.write_table(table, tmp_path / "t.parquet")
    result = read_dataset(tmp_path / "t.parquet")
    assert result.format == "parquet"
    r = result.records[2]
    assert (r.definition, r.input, r.output, r.source_id, r.line) == (DEFINITION, REVIEWS[2][0], "positive", "2", None)
    assert json.loads(r.raw) == table_rows()[2]
    out = tmp_path / "out.parquet"
    out.write_bytes(rebuild(result, keep=[0, 2, 5]))
    back = pq.read_table(out)
    assert back.schema == table.schema
    again = read_dataset(out)
    assert [x.raw for x in again.records] == [result.records[i].raw for i in (0, 2, 5)]


def test_parquet_unsupported_column_type_is_named(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"input": ["a"], "output": ["b"], "blob": [b"\x00"]}), tmp_path / "b.parquet")
    with pytest.raises(Exception, match="column 'blob' has Arrow type binary"):
        read_dataset(tmp_path / "b.parquet")


def test_hf_save_to_disk_with_class_labels(tmp_path: Path) -> None:
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    ds = datasets.Dataset.from_list([{"sentence": t, "label": int(lab == "positive")} for t, lab in REVIEWS],
                                    features=features)
    ds.select([5, 4, 3, 2, 1, 0]).save_to_disk(str(tmp_path / "reviews"))  # an indices mapping
    assert detect_format(tmp_path / "reviews") == "hf-disk"
    result = read_dataset(tmp_path / "reviews")
    r = result.records[0]
    assert (r.input, r.output, r.label_space, r.task) == (REVIEWS[5][0], "negative", ["negative", "positive"],
                                                          "reviews")
    write_records({"layout": result.layout}, [x.raw for x in result.records[:3]], tmp_path / "out")
    again = datasets.load_from_disk(str(tmp_path / "out"))
    assert again.features == features and len(again) == 3
    assert [x.raw for x in read_dataset(tmp_path / "out").records] == [x.raw for x in result.records[:3]]


def test_hf_dataset_dict_asks_for_a_split(tmp_path: Path) -> None:
    import datasets

    d = datasets.Dataset.from_list([{"input": "a", "output": "b"}])
    datasets.DatasetDict({"train": d, "test": d}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(Exception, match=r"several splits \(train, test\)"):
        read_dataset(tmp_path / "dd")


@pytest.mark.parametrize(
    ("maker", "expected"),
    [
        (lambda p: write_jsonl(p / "a.jsonl", sni_jsonl_lines()), "sni-jsonl"),
        (lambda p: sni_task_json(p / "task1_a.json"), "sni-json"),
        (lambda p: sni_task_json(p / "task1_b.json", indent=None), "sni-json"),
        (lambda p: write_jsonl(p / "c.jsonl", alpaca_records()), "alpaca"),
        (lambda p: write_jsonl(p / "d.jsonl", chat_records()), "chat"),
        (lambda p: write_jsonl(p / "e.data", chat_records(), bom=True), "chat"),
    ],
)
def test_detection(tmp_path: Path, maker, expected: str) -> None:
    assert detect_format(maker(tmp_path)) == expected


def test_latin1_file_with_encoding_option(tmp_path: Path) -> None:
    rec = {"instruction": "Rate", "input": "Très bon café", "output": "positive"}
    path = tmp_path / "l.jsonl"
    path.write_bytes(json.dumps(rec, ensure_ascii=False).encode("latin-1") + b"\n")
    result = read_dataset(path, "auto", ReadOptions(encoding="latin-1"))
    assert result.records[0].input == "Très bon café"
    assert rebuild(result) == path.read_bytes()  # raw bytes stay latin-1
