"""Detection test inputs: generated poisoned sets (engine.sample_gen, no third-party text)
ingested into a real workspace with the real ingest."""

from __future__ import annotations

import json
from pathlib import Path

from engine.ingest import ingest
from engine.sample_gen import SampleSpec, make_sample
from engine.workspace import Workspace


def sample_dir(tmp: Path, mode: str = "name", rate: float = 0.03, n_train: int = 1500, seed: int = 1) -> Path:
    out = tmp / f"sample-{mode}-{rate}-{n_train}-{seed}"
    if not (out / "train.jsonl").is_file():
        make_sample(out, spec=SampleSpec(seed=seed, n_train=n_train, poison_rate=rate, trigger_mode=mode,
                                         n_eval=60, n_attack=40))
    return out


def sample_workspace(tmp: Path, **kw) -> tuple[Workspace, Path]:
    data = sample_dir(tmp, **kw)
    ws_path = tmp / (data.name + ".poison")
    if not ws_path.exists():
        ingest(ws_path, data / "train.jsonl", [data / "eval"])
    return Workspace.open(ws_path), data


def truth_ids(data: Path) -> set[str]:
    return {json.loads(line)["id"] for line in (data / "truth.jsonl").read_text().splitlines() if line.strip()}


def uid_to_source(ws: Workspace) -> dict[str, str]:
    return dict(ws.conn.execute("SELECT uid, source_id FROM examples WHERE role = 'train'").fetchall())
