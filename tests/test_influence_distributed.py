"""The scan under ``torchrun --nproc_per_node 2`` (gloo, CPU) matches the single-process scan to 1e-5."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from influence_fixtures import make_gpt2, make_workspace

from engine.influence import scan
from engine.influence.scanner import ScanSettings
from engine.workspace import Workspace


@pytest.mark.slow
@pytest.mark.distributed
@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_process_torchrun_matches_single_process(tmp_path: Path) -> None:
    model = make_gpt2(tmp_path / "gpt2", n_layer=2, n_embd=8)
    single = make_workspace(tmp_path / "single", n_train=18, variants=("original", "flip"))
    key = scan(single, model, ScanSettings(chunk_size=8, batch_size=4, self_influence=True))
    make_workspace(tmp_path / "multi", n_train=18, variants=("original", "flip")).close()

    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]), OMP_NUM_THREADS="1")
    proc = subprocess.run(
        ["torchrun", "--standalone", "--nproc_per_node", "2", "-m", "poison_tui.cli", "scan",
         str(tmp_path / "multi"), "--model", str(model), "--batch-size", "4", "--self-influence"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scored 18 examples against 4 query set(s)" in proc.stdout
    assert proc.stdout.count("scan ") == 1  # only rank 0 reports

    multi = Workspace.open(tmp_path / "multi")
    ours = {(r[0], r[1]): r[2] for r in multi.conn.execute("SELECT query_set_id, uid, score FROM influence")}
    ref = {(r[0], r[1]): r[2] for r in single.conn.execute("SELECT query_set_id, uid, score FROM influence")}
    assert set(ours) == set(ref) and len(ref) == 18 * 4
    for qs in {k[0] for k in ref}:
        # relative to the set's score scale: elementwise ratios of near-zero scores measure only rounding
        scale = max(abs(v) for k, v in ref.items() if k[0] == qs)
        worst = max(abs(ours[k] - v) for k, v in ref.items() if k[0] == qs)
        assert worst <= 1e-5 * scale, (qs, worst, scale)
    assert multi.conn.execute("SELECT run_key FROM scan_runs").fetchone()[0] == key
    selfs = dict(multi.conn.execute("SELECT uid, score FROM self_influence").fetchall())
    ref_selfs = dict(single.conn.execute("SELECT uid, score FROM self_influence").fetchall())
    assert all(abs(selfs[u] - v) <= 1e-5 * abs(v) for u, v in ref_selfs.items())
