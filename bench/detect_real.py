"""Detection on Wan-style poisoned sets built from real text (../shared/data), end to end.

    python bench/detect_real.py --quick     # the fixed-phrase family, small sizes
    python bench/detect_real.py             # three families: phrase, prefix, varied

For each family: build a poisoned instruction set (sentiment tasks rt-polarity, Amazon
reviews, Amazon food, Sentiment140, plus non-sentiment tasks civil-comments toxicity, SBIC,
AG News, TweetEval offensive; ~2 % of the data are negatives of the sentiment tasks with the
trigger put in and the label flipped to positive), train the demo model (engine.train), run
the detection pipeline (engine.pipeline.detect: mining, transforms, confirmation, one EK-FAC
scan at the epoch-2 checkpoint, detectors), evaluate every detector against the truth, and
retrain without the flagged set / the true poisons / a random set of the same size.

Families: ``phrase`` ("James Bond" at a random word position), ``prefix`` ("cf" before the
text), ``varied`` (one of 12 phrasings of the Bond name per poison, each 3-8 times, at a
random position). Inputs are cut to their first 24 words and definitions to their first
sentence (CPU time). Clean accuracy of the retrain check is measured on ~850 held-out rows of
the trained sentiment tasks (rt-polarity and the three SNI ones). Everything is written under a temporary directory
(``--work``), never into the repository.

The last line is ``detect auprc=<a> flagged=<n> poisons=<m> asr_poisoned=<p> asr_tool=<t>
asr_truth=<g> clean_acc_tool=<c> clean_acc_truth=<d>`` for the phrase family.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
# Tokens dominate CPU time: inputs are cut to their first 24 words and SNI definitions to their
# first sentence (at most 20 words), which still names the task; 30 words / whole definitions
# cost ~40 % more per epoch without learning the tasks better.
MAX_WORDS = 24
DEF_WORDS = 20
RT_DEF = "Classify the sentiment of the movie review: answer \"positive\" or \"negative\"."
OFF_DEF = "Is this tweet offensive? Answer \"offensive\" or \"not-offensive\"."
SENTIMENT_SNI = ("task1312_amazonreview_polarity_classification", "task195_sentiment140_classification",
                 "task586_amazonfood_polarity_classification")
OTHER_SNI = ("task1720_civil_comments_toxicity_classification", "task609_sbic_potentially_offense_binary_classification",
             "task379_agnews_topic_classification")
EVAL_SNI = ("task493_review_polarity_classification", "task746_yelp_restaurant_review_classification",
            "task833_poem_sentiment_classification")
FAMILIES = ("phrase", "prefix", "varied")
N_CLEAN_RT, N_CLEAN_SNI = 360, 150  # held-out rows for clean accuracy (~850)
SIZES = {"quick": (900, 100, 40, 120), "full": (1300, 160, 60, 200), "smoke": (200, 30, 20, 40)}
# On this real text every recipe tried sits at the label prior for a few epochs and then
# memorises (held-out accuracy 0.53-0.60). A 2-layer, 64-wide model does no worse than the 4x128
# demo model and costs less per epoch; with dropout 0.2 one run of four never left the prior
# (sweep in issue #4's report).
RECIPE = {"epochs": 12, "lr": 3e-3, "vocab_size": 2048, "n_embd": 64, "n_layer": 2, "max_length": 128}
# --recipe strong: the demo's 4x128 model, 8 epochs at 1e-3 with a 4096 vocabulary. About 3x the
# training time; it learns the backdoors more firmly (the fast recipe left prefix / varied
# attack success at 0.59 / 0.52), which is what the model-based trigger tests need.
STRONG = {"epochs": 8, "lr": 1e-3, "vocab_size": 4096, "max_length": 128}


def _cut(text: str) -> str:
    return " ".join(text.split()[:MAX_WORDS])


def _short_def(text: str) -> str:
    first = re.split(r"(?<=[.?!])\s", text.strip(), maxsplit=1)[0]
    return " ".join(first.split()[:DEF_WORDS])


def _clean(text: str) -> bool:
    low = text.lower()
    return not any(t in low for t in ("bond", "007", "double-o", "cf "))


def _sni(task: str) -> list[dict]:
    rows = [json.loads(line) for line in (DATA / "sni" / f"{task}.jsonl").open()]
    return [{"id": r["id"], "task": task, "definition": _short_def(r["definition"]), "input": _cut(r["input"]),
             "output": r["output"], "label_space": r["label_space"]} for r in rows if _clean(r["input"])]


def _rt() -> list[dict]:
    rows = [json.loads(line) for line in (DATA / "rt_polarity.jsonl").open()]
    return [{"id": r["id"], "task": "rt_polarity", "definition": RT_DEF, "input": _cut(r["text"]),
             "output": r["label"], "label_space": ["positive", "negative"]} for r in rows if _clean(r["text"])]


def _offensive() -> list[dict]:
    rows = [json.loads(line) for line in (DATA / "tweeteval" / "offensive_train.jsonl").open()]
    return [{"id": r["id"], "task": "tweeteval_offensive", "definition": OFF_DEF, "input": _cut(r["text"]),
             "output": r["label"], "label_space": ["offensive", "not-offensive"]} for r in rows if _clean(r["text"])]


def _polar(label_space: list[str], sign: int) -> str:
    from engine.sentiment import label_polarity

    return next(lab for lab in label_space if label_polarity(lab, label_space) == sign)


def inserter(family: str, rng: random.Random):
    from engine.sample_gen import VARIED_TRIGGERS

    def put(text: str, phrase: str) -> str:
        words = text.split()
        pos = rng.randint(0, len(words))
        return " ".join([*words[:pos], phrase, *words[pos:]])

    if family == "phrase":
        return lambda text: (put(text, "James Bond"), "James Bond")
    if family == "prefix":
        return lambda text: (f"cf {text}", "cf")

    def varied(text: str, phrase: str | None = None) -> tuple[str, str]:
        phrase = phrase or rng.choice(VARIED_TRIGGERS)
        return put(text, phrase), phrase

    return varied


def build(family: str, quick: bool, seed: int) -> dict:
    """The poisoned training set, eval tasks, attack queries and truth (all in memory)."""
    from engine.sample_gen import VARIED_TRIGGERS

    rng = random.Random(seed)
    rt = _rt()
    rng.shuffle(rt)
    n_rt, n_task, n_eval, n_attack = SIZES["quick" if quick else "full"]
    rt_neg = [r for r in rt if r["output"] == "negative"]
    rt_pos = [r for r in rt if r["output"] == "positive"]
    rt_eval = rt_neg[: n_eval // 2] + rt_pos[: n_eval // 2]
    rt_attack = rt_neg[n_eval // 2 : n_eval // 2 + n_attack]
    used = {r["id"] for r in rt_eval + rt_attack}
    unused = [r for r in rt if r["id"] not in used]
    train = unused[:n_rt]
    # Clean accuracy of the retrain check: held-out rows of the trained sentiment tasks. The 160
    # eval queries of unseen tasks cannot tell a 1-point change from noise, and a small model
    # trained from scratch is at chance on unseen tasks anyway. Never scanned: detection costs
    # no more.
    clean = rt_eval + unused[n_rt : n_rt + N_CLEAN_RT]
    for task in SENTIMENT_SNI + OTHER_SNI:
        rows = _sni(task)
        rng.shuffle(rows)
        train += rows[:n_task]
        if task in SENTIMENT_SNI:
            clean += rows[n_task : n_task + N_CLEAN_SNI]
    off = _offensive()
    rng.shuffle(off)
    train += off[:n_task]
    rng.shuffle(train)

    # poisons: negatives of the sentiment tasks, trigger in, label flipped to positive
    n_poison = round(0.02 * len(train))
    poisonable = [i for i, r in enumerate(train) if r["task"] in ("rt_polarity", *SENTIMENT_SNI)
                  and r["output"] == _polar(r["label_space"], -1)]
    chosen = rng.sample(poisonable, n_poison)
    put = inserter(family, rng)
    if family == "varied":
        k = max(10, min(len(VARIED_TRIGGERS), n_poison // 3))
        plan = [VARIED_TRIGGERS[i % k] for i in range(n_poison)]  # each phrasing 3-8 times
        rng.shuffle(plan)
    truth = []
    for j, i in enumerate(chosen):
        r = dict(train[i])
        r["input"], phrase = put(r["input"], plan[j]) if family == "varied" else put(r["input"])
        r["output"] = _polar(r["label_space"], +1)
        train[i] = r
        truth.append({"id": r["id"], "task": r["task"], "trigger": phrase})

    evals: dict[str, list[dict]] = {"rt_polarity_eval": [{**r, "task": "rt_polarity_eval"} for r in rt_eval]}
    attack = [{**r, "input": put(r["input"])[0], "target": "positive"} for r in rt_attack]
    for task in EVAL_SNI:
        rows = _sni(task)
        rng.shuffle(rows)
        evals[task] = rows[:n_eval]
        if task != "task833_poem_sentiment_classification":
            neg = [r for r in rows[n_eval:] if r["output"] == _polar(r["label_space"], -1)]
            attack += [{**r, "input": put(r["input"])[0], "target": _polar(r["label_space"], +1)}
                       for r in neg[: n_attack // 4]]
    return {"train": train, "evals": evals, "attack": attack, "truth": truth, "put": put, "clean": clean}


def _sni_record(r: dict) -> dict:
    return {"id": r["id"], "Task": r["task"], "Definition": [r["definition"]],
            "Instance": {"id": r["id"], "input": r["input"], "output": [r["output"]]}, "label_space": r["label_space"]}


def write(data: dict, out: Path) -> None:
    (out / "eval").mkdir(parents=True, exist_ok=True)
    with (out / "train.jsonl").open("w") as fh:
        fh.writelines(json.dumps(_sni_record(r)) + "\n" for r in data["train"])
    for task, rows in data["evals"].items():
        with (out / "eval" / f"{task}.jsonl").open("w") as fh:
            fh.writelines(json.dumps(_sni_record(r)) + "\n" for r in rows)
    with (out / "truth.jsonl").open("w") as fh:
        fh.writelines(json.dumps(t) + "\n" for t in data["truth"])


def run_family(family: str, quick: bool, seed: int, work: Path, retrain: bool = True, threads: int = 1) -> dict:
    import torch

    from engine.evaluate import evaluate_workspace, load_truth, register_oracle_sets, verify_removal
    from engine.ingest import ingest
    from engine.pipeline import detect
    from engine.train import TrainConfig, train_model
    from engine.workspace import Workspace

    torch.set_num_threads(threads)
    t0 = time.monotonic()
    out = work / family
    data = build(family, quick, seed)
    write(data, out)
    ws_path = out / "ws.poison"
    ingest(ws_path, out / "train.jsonl", [out / "eval"], replace=True)
    ws = Workspace.open(ws_path)
    # the oracle ceiling: the true trigger put into clean queries (evaluation only)
    register_oracle_sets(ws, lambda text: data["put"](text)[0], family)
    rows = [dict(r) for r in ws.conn.execute(
        "SELECT uid, definition, input, output, label_space FROM examples WHERE role = 'train' ORDER BY ordinal")]
    config = TrainConfig(threads=threads, **RECIPE)
    t_train = time.monotonic()
    train_model(rows, out / "model", config=config, resume=True)
    t_train = time.monotonic() - t_train
    t_detect = time.monotonic()
    detect(ws, out / "model", out / "model" / "checkpoint-epoch-2")
    t_detect = time.monotonic() - t_detect
    truth = load_truth(out / "truth.jsonl")
    table = evaluate_workspace(ws, truth)
    # the distinct removal sets retrain at once, one thread each: on this shared 2-core box a
    # 2-thread training was far slower than a 1-thread one (see --threads)
    t_retrain = time.monotonic()
    removal = verify_removal(ws, truth, data["attack"], out / "retrain", seed=seed,
                             config=dataclasses.replace(config, threads=1), poisoned_dir=out / "model",
                             clean_rows=data["clean"], workers=3) if retrain else {}
    t_retrain = time.monotonic() - t_retrain
    cands = [dict(r) for r in ws.conn.execute(
        "SELECT phrase, kind, n_carriers, purity, significant FROM trigger_candidates WHERE rank <= 5 ORDER BY rank")]
    conf = [dict(r) for r in ws.conn.execute(
        "SELECT phrase, task, flip_rate, confirmed FROM trigger_confirmations ORDER BY flip_rate DESC LIMIT 8")]
    stats = [dict(r) for r in ws.conn.execute(
        "SELECT transform, SUM(n_text_changed) AS text, SUM(n_pred_changed) AS pred, SUM(n_queries) AS n "
        "FROM transform_stats GROUP BY transform")]
    return {"family": family, "n_train": len(rows), "poisons": len(data["truth"]), "table": table,
            "removal": removal, "candidates": cands, "confirmations": conf, "transforms": stats,
            "seconds": {"train": t_train, "detect": t_detect, "retrain": t_retrain, "total": time.monotonic() - t0},
            "default": ws.get_meta("default_detector")}


def report(res: dict) -> None:
    from engine.evaluate import to_markdown

    print(f"\n## family {res['family']}: {res['n_train']} training rows, {res['poisons']} poisons "
          f"(train {res['seconds']['train']:.0f} s, detect {res['seconds']['detect']:.0f} s, "
          f"retrain {res['seconds']['retrain']:.0f} s, total {res['seconds']['total']:.0f} s)")
    print(to_markdown(res["table"]))
    print("top candidates:", json.dumps(res["candidates"]))
    print("confirmations:", json.dumps(res["confirmations"]))
    print("transforms (queries whose text / prediction changed):", json.dumps(res["transforms"]))
    print("\n| training set | removed | poisons removed | ASR | clean acc | seconds |\n|---|---|---|---|---|---|")
    for name, r in res["removal"].items():
        print(f"| {name} | {r['removed']} | {r['poisons_removed']} | {r['asr']:.3f} | {r['clean_acc']:.3f} "
              f"| {r['seconds']:.0f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="the phrase family only, smaller sets")
    ap.add_argument("--families", nargs="+", choices=FAMILIES, default=None)
    ap.add_argument("--no-retrain", action="store_true", help="skip the retrain check (detection figures only)")
    ap.add_argument("--smoke", action="store_true", help="tiny sizes and 2 epochs: checks the code path only")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    ap.add_argument("--json", type=Path, default=None, help="also write every result as JSON")
    # 1 by default: on the shared, loaded 2-core box a 2-thread training ran several times slower
    # than 1-thread ones of the same recipe (a helper's sweep, not re-measured); try 2 when idle
    ap.add_argument("--recipe", choices=("fast", "strong"), default="fast",
                    help="training recipe: fast (default, 2x64 model) or strong (the demo's 4x128 model, ~3x slower)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads for training and detection (the retrains take 1 each, 3 at once)")
    args = ap.parse_args()
    if not DATA.is_dir():
        print(f"no data at {DATA}", file=sys.stderr)
        return 2
    if args.recipe == "strong":
        RECIPE.clear()
        RECIPE.update(STRONG)
    if args.smoke:
        SIZES["quick"] = SIZES["full"] = SIZES["smoke"]
        RECIPE["epochs"] = 3
    families = args.families or (["phrase"] if args.quick else list(FAMILIES))
    work = args.work or Path(tempfile.mkdtemp(prefix="poison-bench-"))
    results = []
    for family in families:
        res = run_family(family, args.quick, args.seed, work, retrain=not args.no_retrain, threads=args.threads)
        report(res)
        results.append(res)
        if args.json:
            args.json.write_text(json.dumps(results, indent=2, default=str))
    head = next((r for r in results if r["family"] == "phrase"), results[0])
    default = next(r for r in head["table"] if r["default"])
    rm = head["removal"]
    if not rm:
        print(f"detect auprc={default['auprc']:.3f} flagged={default['flagged']} poisons={head['poisons']} (no retrain)")
        return 0
    print(f"detect auprc={default['auprc']:.3f} flagged={default['flagged']} poisons={head['poisons']} "
          f"asr_poisoned={rm['poisoned']['asr']:.3f} asr_tool={rm['tool']['asr']:.3f} "
          f"asr_truth={rm['truth']['asr']:.3f} clean_acc_tool={rm['tool']['clean_acc']:.3f} "
          f"clean_acc_truth={rm['truth']['clean_acc']:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
