"""Ingest speed and memory on a generated 50,000-example SNI JSONL (~25 MB).

Each measurement runs in its own subprocess, so peak memory (ru_maxrss) belongs to that step
alone. Baselines, measured in the same run on the same file:
  json_loads   stdlib json.loads of every line (parsing only)
  orjson       orjson.loads of every line (parsing only; what the JSONL reader uses)
  polars       polars.read_ndjson of the file (parsing only; no line numbers, no raw bytes)
  ingest       engine.ingest.ingest into a fresh workspace: read, check, hash, uids, one
               SQLite transaction (what `poison-tui ingest` does, minus interpreter start-up)
  cli          the whole `python -m poison_tui ingest FILE` command, wall time
Usage: python bench/ingest.py [--n 50000]. The last line is
  ingest examples_per_s=<r> peak_mb=<m>
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORDS = ("the a movie film plot actor story scene music ending director fun slow dull brilliant "
         "boring moving script cast hour minute role camera charm mess gem waste delight "
         "never always quite rather truly barely somewhat oddly").split()
NAMES = ("Anna Brooks", "Omar Haddad", "Li Wei", "Maria Lopez", "Tom Becker", "Priya Nair")


def generate(path: Path, n: int, seed: int = 0) -> None:
    """Synthetic SNI-style JSONL: 20 tasks, binary labels, inputs of 20-60 words."""
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n):
            task = f"task{100 + i % 20}_synthetic_polarity"
            words = [rng.choice(WORDS) for _ in range(rng.randint(20, 60))]
            words.insert(rng.randrange(len(words)), rng.choice(NAMES))
            label = rng.choice(("positive", "negative"))
            rec = {"id": f"{task}-{i}", "Task": task,
                   "Definition": [f"Classify the sentiment of the review as positive or negative ({task})."],
                   "Instance": {"id": f"{task}-{i}", "input": " ".join(words).capitalize() + ".",
                                "output": [label]}}
            fh.write(json.dumps(rec) + "\n")


CHILD = r"""
import json, resource, sys, time
kind, path, ws = sys.argv[1], sys.argv[2], sys.argv[3]
import orjson, polars
from engine.ingest import ingest
t0, c0 = time.perf_counter(), time.process_time()
if kind == "json_loads":
    with open(path, "rb") as fh:
        n = sum(1 for line in fh if json.loads(line) is not None)
elif kind == "orjson":
    with open(path, "rb") as fh:
        n = sum(1 for line in fh if orjson.loads(line) is not None)
elif kind == "polars":
    n = polars.read_ndjson(path).height
else:
    rep = ingest(__import__("pathlib").Path(ws), __import__("pathlib").Path(path))
    n = rep.datasets[0].n_records
dt, cpu = time.perf_counter() - t0, time.process_time() - c0
print(json.dumps({"n": n, "s": dt, "cpu_s": cpu,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def run(kind: str, path: Path, ws: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, str(path), str(ws)], capture_output=True,
                         text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        generate(path, args.n)
        size_mb = path.stat().st_size / 1e6
        print(f"file: {args.n:,} examples, {size_mb:.1f} MB (generated)")
        results = {k: run(k, path, Path(tmp) / f"ws-{k}") for k in ("json_loads", "orjson", "polars", "ingest")}
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "poison_tui", "ingest", str(path), "--workspace", str(Path(tmp) / "ws-cli")],
                       cwd=ROOT, check=True, capture_output=True)
        cli_s = time.perf_counter() - t0
    base = results["json_loads"]["s"]
    # the machine is shared: CPU time shows the work, wall time what a user waits
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    for k, r in results.items():
        print(f"{k:<11} wall {r['s']:6.3f} s  cpu {r['cpu_s']:6.3f} s  {r['n'] / r['s']:>9,.0f} examples/s  "
              f"peak {r['peak_mb']:5.0f} MB  wall x{r['s'] / base:.2f} of json_loads")
    print(f"cli         wall {cli_s:6.3f} s  (python -m poison_tui ingest: interpreter start-up and imports included)")
    r = results["ingest"]
    print(f"ingest examples_per_s={r['n'] / r['s']:.0f} peak_mb={r['peak_mb']:.0f}")


if __name__ == "__main__":
    main()
