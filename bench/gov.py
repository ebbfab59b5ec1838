"""Governance costs at scale: a decision, a bulk action, export and verify on 50,000 examples.

The workspace is a generated SNI JSONL ingested with engine.ingest (bench/ingest.py's
generator), plus a detector score per example so every audit record carries evidence.
Baselines, measured in the same run on the same database or bytes:
  bare_decision   one BEGIN IMMEDIATE transaction doing only the two writes a decision needs
                  (UPSERT review_status + INSERT decisions), synchronous=FULL like decide()
  bare_bulk       the same writes for the bulk's rows, executemany in one transaction
  bare_write      read the raw records from SQLite, drop the excluded ones, join them with
                  newlines, write, fsync and rename: what any exporter must at least do
Ratios are ours / baseline. Usage: python bench/gov.py [--n 50000] [--decisions 200].
The last line reads
  gov decide_ms=<p50> decide_p95_ms=<p95> decide_ratio=<r> bulk_s=<s> bulk_ratio=<r> export_s=<s> export_ratio=<r> verify_s=<s>
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--decisions", type=int, default=200)
    ap.add_argument("--bulk", type=int, default=5_000)
    args = ap.parse_args()

    from ingest import generate

    from engine.atomic import atomic_write_bytes
    from engine.decisions import decide
    from engine.export import export
    from engine.ingest import ingest
    from engine.verify import verify
    from engine.workspace import Workspace, utc_now

    tmp = Path(tempfile.mkdtemp(prefix="bench-gov-"))
    src = tmp / "train.jsonl"
    generate(src, args.n)
    ingest(tmp / "ws", src)
    ws = Workspace.open(tmp / "ws")
    conn = ws.conn
    uids = [r[0] for r in conn.execute("SELECT uid FROM examples WHERE role = 'train' ORDER BY ordinal")]
    with ws.transaction():
        conn.execute("INSERT INTO detector_runs (detector, rule, n_scored, n_flagged, is_default, created_at) "
                     "VALUES ('bench', 'top 2%', ?, 0, 1, ?)", (len(uids), utc_now()))
        conn.executemany("INSERT INTO detector_scores (detector, uid, score, rank) VALUES ('bench', ?, ?, ?)",
                         [(u, 1.0 / (i + 1), i + 1) for i, u in enumerate(uids)])
    rng = random.Random(0)
    d = args.decisions
    picks = rng.sample(uids, d * 2 + args.bulk * 2)
    single, baseline_picks = picks[:d], picks[d: 2 * d]
    bulk, baseline_bulk = picks[2 * d: 2 * d + args.bulk], picks[2 * d + args.bulk:]

    # interleave ours and the baseline so disk and cache state affect both alike
    ours, bare = [], []
    for a, b in zip(single, baseline_picks, strict=True):
        t = time.perf_counter()
        decide(ws, [a], "remove", reason="trigger_phrase", actor="bench")
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        with ws.transaction():
            conn.execute("INSERT INTO decisions (ts, actor, uid, action, prior_status, new_status) "
                         "VALUES (?, 'bench', ?, 'keep', 'undecided', 'keep')", (utc_now(), b))
            conn.execute("INSERT INTO review_status (uid, status, decision_seq) VALUES (?, 'keep', 0) "
                         "ON CONFLICT(uid) DO UPDATE SET status = excluded.status", (b,))
        bare.append(time.perf_counter() - t)
    # the baseline rows bypass the audit log on purpose; drop them so verify sees a clean log
    with ws.transaction():
        conn.execute("DELETE FROM decisions WHERE action = 'keep' AND actor = 'bench'")
        conn.executemany("DELETE FROM review_status WHERE uid = ?", [(b,) for b in baseline_picks])
    p50, p95 = statistics.median(ours) * 1e3, statistics.quantiles(ours, n=20)[18] * 1e3
    bare50 = statistics.median(bare) * 1e3

    t = time.perf_counter()
    decide(ws, bulk, "quarantine", reason="duplicate", actor="bench", bulk=True)
    bulk_s = time.perf_counter() - t
    t = time.perf_counter()
    with ws.transaction():
        conn.executemany("INSERT INTO decisions (ts, actor, uid, action, prior_status, new_status) "
                         "VALUES (?, 'bench', ?, 'keep', 'undecided', 'keep')",
                         [(utc_now(), u) for u in baseline_bulk])
        conn.executemany("INSERT INTO review_status (uid, status, decision_seq) VALUES (?, 'keep', 0) "
                         "ON CONFLICT(uid) DO UPDATE SET status = excluded.status", [(u,) for u in baseline_bulk])
    bare_bulk_s = time.perf_counter() - t
    with ws.transaction():
        conn.execute("DELETE FROM decisions WHERE action = 'keep' AND actor = 'bench'")
        conn.executemany("DELETE FROM review_status WHERE uid = ?", [(b,) for b in baseline_bulk])

    t = time.perf_counter()
    result = export(ws)  # the default directory, which verify of the workspace checks and replays
    export_s = time.perf_counter() - t
    excluded = set(single) | set(bulk)
    t = time.perf_counter()
    raws = [r[1] for r in conn.execute("SELECT uid, raw FROM examples WHERE role = 'train' ORDER BY ordinal")
            if r[0] not in excluded]
    atomic_write_bytes(tmp / "bare.jsonl", b"\n".join(raws) + b"\n")
    bare_write_s = time.perf_counter() - t
    assert (tmp / "bare.jsonl").read_bytes() == (result.out_dir / "train.jsonl").read_bytes()

    ws.close()
    t = time.perf_counter()
    report = verify(tmp / "ws")
    verify_s = time.perf_counter() - t
    assert report.ok, report.first_problem

    print(f"examples {args.n:,}  cpu threads {os.cpu_count()}")
    print(f"decision   ours p50 {p50:.2f} ms  p95 {p95:.2f} ms   bare_decision p50 {bare50:.2f} ms")
    print(f"bulk {len(bulk):,}  ours {bulk_s:.3f} s   bare_bulk {bare_bulk_s:.3f} s")
    print(f"export     ours {export_s:.3f} s   bare_write {bare_write_s:.3f} s")
    print(f"verify     {verify_s:.3f} s ({len(report.checks)} checks, replay of {len(single) + len(bulk):,} decisions)")
    print(f"gov decide_ms={p50:.2f} decide_p95_ms={p95:.2f} decide_ratio={p50 / bare50:.2f} "
          f"bulk_s={bulk_s:.3f} bulk_ratio={bulk_s / bare_bulk_s:.2f} export_s={export_s:.3f} "
          f"export_ratio={export_s / bare_write_s:.2f} verify_s={verify_s:.3f}")


if __name__ == "__main__":
    main()
