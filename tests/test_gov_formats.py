"""Round trip for every input format: ingest, decide, export, sign, verify (replay included)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from ingest_fixtures import (
    alpaca_records,
    chat_records,
    csv_text,
    sni_jsonl_lines,
    sni_task_json,
    table_rows,
    write_jsonl,
)

from engine import signing
from engine.decisions import decide
from engine.export import REMOVED, export
from engine.formats import read_dataset
from engine.ingest import ingest
from engine.verify import verify
from engine.workspace import Workspace

N = 8


def _parquet(p: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(table_rows(N)), p / "train.parquet")
    return p / "train.parquet"


def _hf_disk(p: Path) -> Path:
    import datasets

    datasets.Dataset.from_list(table_rows(N)).save_to_disk(str(p / "train_ds"))
    return p / "train_ds"


def _csv(p: Path) -> Path:
    (p / "train.csv").write_bytes(csv_text(N).encode())
    return p / "train.csv"


INPUTS: dict[str, Callable[[Path], Path]] = {
    "sni-jsonl-crlf-no-final-newline": lambda p: write_jsonl(p / "train.jsonl", sni_jsonl_lines(n=N),
                                                             newline="\r\n", final=False, bom=True),
    "sni-json": lambda p: sni_task_json(p / "task.json", n=N),
    "alpaca-jsonl": lambda p: write_jsonl(p / "alpaca.jsonl", alpaca_records(N)),
    "alpaca-array": lambda p: (p / "alpaca.json").write_text(json.dumps(alpaca_records(N), indent=2)) and p / "alpaca.json",
    "chat": lambda p: write_jsonl(p / "chat.jsonl", chat_records(N)),
    "csv": _csv,
    "parquet": _parquet,
    "hf-disk": _hf_disk,
}
BINARY = {"parquet", "hf-disk"}


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> signing.KeyInfo:
    return signing.generate_key(tmp_path_factory.mktemp("key") / "k.pem", b"pw")


@pytest.mark.parametrize("name", sorted(INPUTS))
def test_round_trip(name: str, tmp_path: Path, key: signing.KeyInfo) -> None:
    src = INPUTS[name](tmp_path)
    ingest(tmp_path / "ws", src)
    ws = Workspace.open(tmp_path / "ws")
    original = read_dataset(src)
    out_name = src.name

    # nothing decided: the input comes back unchanged
    out = export(ws, tmp_path / "plain").out_dir
    if name not in BINARY:
        assert (out / out_name).read_bytes() == src.read_bytes()
    assert [r.raw for r in read_dataset(out / out_name, original.format).records] == [r.raw for r in original.records]

    uids = [r[0] for r in ws.conn.execute("SELECT uid FROM examples WHERE role = 'train' ORDER BY ordinal")]
    decide(ws, [uids[1]], "remove", reason="trigger_phrase")
    decide(ws, [uids[3]], "quarantine")
    result = export(ws)
    cleaned = read_dataset(result.out_dir / out_name, original.format).records
    assert [r.raw for r in cleaned] == [r.raw for i, r in enumerate(original.records) if i not in (1, 3)]
    [removed] = [json.loads(x) for x in (result.out_dir / REMOVED).read_bytes().splitlines()]
    assert removed["uid"] == uids[1] and removed["ordinal"] == 1
    # same decisions, same bytes (binary formats included)
    again = export(ws, tmp_path / "again")
    assert again.files == result.files

    signing.signoff(ws, "alice", signing.Signer(key.path, b"pw"))
    report = verify(ws.path, public_key=key.public_path)
    assert report.ok, report.first_problem
    # the bundle alone, with the original input: replay re-reads the input with the format readers
    bundle = Path(shutil.copytree(result.out_dir, tmp_path / "bundle"))
    report = verify(bundle, public_key=key.public_path, inputs=[src])
    assert report.ok, report.first_problem
    assert report.checks[-1].name == "replay" and report.checks[-1].ok
