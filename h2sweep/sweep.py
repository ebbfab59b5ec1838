import json, os, sys, time, glob, subprocess
from pathlib import Path
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

def rd(p):
    out = []
    for l in open(p):
        r = json.loads(l)
        out.append({"uid": r["id"], "definition": r["Definition"][0], "input": r["Instance"]["input"],
                    "output": r["Instance"]["output"][0], "label_space": r["label_space"]})
    return out

def worker(name, kw, outdir):
    import torch
    torch.set_num_threads(1)
    from engine.train import TrainConfig, train_model
    from engine.models import load_model
    from engine.predict import clean_accuracy, attack_success_rate, predict_labels, positive_label
    D = ROOT / "sample_data"
    train = rd(D / "train.jsonl")
    evals = {Path(p).stem[5:12]: rd(p) for p in sorted(glob.glob(str(D / "eval/*.jsonl")))}
    attack = [r for p in sorted(glob.glob(str(D / "attack/*.jsonl"))) for r in rd(p)]
    neg = [r for v in evals.values() for r in v if r["label_space"][0].lower().startswith("pos") and r["output"] == r["label_space"][1]]
    cfg = TrainConfig(threads=1, **kw)
    t = time.time()
    res = train_model(train, Path(outdir) / name, config=cfg)
    tt = time.time() - t
    out = {"name": name, "kw": kw, "train_s": round(tt, 1), "loss": [round(h["loss"], 3) for h in res.history]}
    for ep in kw.get("_eval_epochs", []):
        pass
    cks = sorted((Path(outdir) / name).glob("checkpoint-epoch-*"), key=lambda p: int(p.name.split("-")[-1]))
    for ck in [cks[len(cks) // 2 - 1], Path(outdir) / name]:
        lm = load_model(ck, device="cpu")
        acc = {k: round(clean_accuracy(lm, v), 3) for k, v in evals.items()}
        asr = attack_success_rate(lm, attack)
        preds = predict_labels(lm, neg)
        npos = sum(p == positive_label(r) for p, r in zip(preds, neg)) / len(neg)
        out[ck.name] = {"acc": acc, "asr": round(asr, 3), "negpos": round(npos, 3)}
    print(json.dumps(out), flush=True)

if __name__ == "__main__":
    if sys.argv[1] == "worker":
        worker(sys.argv[2], json.loads(sys.argv[3]), sys.argv[4])
        sys.exit(0)
    configs = json.loads(Path(sys.argv[1]).read_text())
    outdir = sys.argv[2]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false",
           "CUDA_VISIBLE_DEVICES": "", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    procs = [subprocess.Popen([sys.executable, __file__, "worker", n, json.dumps(kw), outdir], env=env)
             for n, kw in configs.items()]
    for p in procs:
        p.wait()
