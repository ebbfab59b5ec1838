"""Tiny, randomly initialised Hugging Face models and workspaces for the influence tests (no downloads)."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

from engine.workspace import Workspace, utc_now

WORDS = (
    "good bad great awful fine poor film movie plot actor scene story dull bright warm cold "
    "james bond loved hated fun boring slow fast sharp weak strong the a of and is was"
).split()
LABELS = ["positive", "negative"]
DEFINITION = "Classify the sentiment of the review"


def make_tokenizer(out_dir: Path, extra_words: list[str] | None = None) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab_words = ["[PAD]", "[UNK]", "[EOS]", *sorted(set(WORDS + LABELS + (extra_words or []))),
                   "Definition", "Input", "Output", ":", "Classify", "sentiment", "review", "yes", "no",
                   "Is", "it", "offensive", "?"]
    vocab = {w: i for i, w in enumerate(dict.fromkeys(vocab_words))}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    fast.save_pretrained(out_dir)


def make_gpt2(
    out_dir: Path, n_layer: int = 2, n_embd: int = 32, n_positions: int = 64, seed: int = 0, init_scale: float = 1.0
) -> Path:
    """A tiny random GPT-2 with its tokenizer, saved as safetensors in ``out_dir``."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    out_dir.mkdir(parents=True, exist_ok=True)
    make_tokenizer(out_dir)
    from transformers import AutoTokenizer

    vocab = len(AutoTokenizer.from_pretrained(out_dir))
    torch.manual_seed(seed)
    cfg = GPT2Config(vocab_size=vocab, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=2,
                     resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=2, eos_token_id=2)
    model = GPT2LMHeadModel(cfg)
    with torch.no_grad():  # larger weights than the default init give peakier predictions
        for p in model.parameters():
            if p.dim() > 1:
                p.mul_(init_scale)
    model.save_pretrained(out_dir)
    return out_dir


def make_t5(out_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    out_dir.mkdir(parents=True, exist_ok=True)
    make_tokenizer(out_dir)
    vocab = len(AutoTokenizer.from_pretrained(out_dir))
    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=vocab, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=2,
                   decoder_start_token_id=0, pad_token_id=0, eos_token_id=2, dropout_rate=0.0)
    T5ForConditionalGeneration(cfg).save_pretrained(out_dir)
    return out_dir


def review(rng: random.Random, n_words: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n_words))


def train_rows(n: int, seed: int = 0, min_words: int = 3, max_words: int = 12) -> list[dict]:
    rng = random.Random(seed)
    return [
        {"definition": DEFINITION, "input": review(rng, rng.randint(min_words, max_words)),
         "output": rng.choice(LABELS), "label_space": json.dumps(LABELS), "task": "sst"}
        for _ in range(n)
    ]


def make_workspace(
    path: Path, n_train: int = 40, tasks: tuple[str, ...] = ("sst", "imdb"), variants: tuple[str, ...] = ("original",),
    n_queries: int = 4, seed: int = 0,
) -> Workspace:
    """A real workspace with training examples and query sets, written the way ingest writes them."""
    ws = Workspace.create(path)
    rows = train_rows(n_train, seed)
    with ws.transaction() as conn:
        conn.execute(
            "INSERT INTO datasets (id, role, path, format, sha256, n_records, ingested_at) "
            "VALUES (1, 'train', 'train.jsonl', 'jsonl', 'x', ?, ?)", (len(rows), utc_now()),
        )
        for i, r in enumerate(rows):
            raw = json.dumps(r).encode()
            conn.execute(
                "INSERT INTO examples (uid, dataset_id, ordinal, role, task, definition, input, output, "
                "label_space, source_file, source_line, raw, content_sha256) "
                "VALUES (?, 1, ?, 'train', ?, ?, ?, ?, ?, 'train.jsonl', ?, ?, ?)",
                (f"t{i:05d}", i, r["task"], r["definition"], r["input"], r["output"], r["label_space"], i + 1,
                 raw, hashlib.sha256(raw).hexdigest()),
            )
    rng = random.Random(seed + 1)
    for task in tasks:
        for variant in variants:
            add_query_set(ws, task, variant, [
                {"definition": DEFINITION, "input": review(rng, rng.randint(3, 10)), "output": rng.choice(LABELS),
                 "label_space": json.dumps(LABELS)} for _ in range(n_queries)
            ])
    return ws


def add_query_set(ws: Workspace, task: str, variant: str, queries: list[dict]) -> str:
    qid = f"{task}::{variant}"
    sha = hashlib.sha256(json.dumps(queries, sort_keys=True).encode()).hexdigest()
    with ws.transaction() as conn:
        conn.execute("DELETE FROM query_sets WHERE id = ?", (qid,))
        conn.execute(
            "INSERT INTO query_sets (id, task, variant, sha256, n_queries, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            (qid, task, variant, sha, len(queries), utc_now()),
        )
        for i, q in enumerate(queries):
            conn.execute(
                "INSERT INTO queries (query_set_id, idx, source_uid, definition, input, output, label_space) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (qid, i, f"e{i}", q["definition"], q["input"], q["output"], q.get("label_space")),
            )
    return qid


def kronfluence_pairwise(
    model_dir: Path, train_rows_: list[dict], query_rows: list[dict], work: Path, fisher: str = "empirical",
    n_factor: int | None = None, batch_size: int = 8, max_length: int = 64,
) -> tuple[float, object]:
    """kronfluence 1.0.1 pairwise scores ``[n_train, n_queries]`` on the same encoding, layers and damping.

    GPT-2's Conv1D layers are converted to nn.Linear (kronfluence tracks nn.Linear only and
    would otherwise silently track nothing but the tied head). Returns (CPU seconds, scores).
    """
    import logging
    import time

    import torch
    from kronfluence.analyzer import Analyzer, prepare_model
    from kronfluence.arguments import FactorArguments, ScoreArguments
    from kronfluence.task import Task
    from kronfluence.utils.dataset import DataLoaderKwargs
    from transformers.pytorch_utils import Conv1D

    from engine.batching import IGNORE, collate, encode_examples
    from engine.models import load_model

    logging.getLogger("kronfluence").setLevel(logging.ERROR)
    lm = load_model(model_dir, device="cpu")
    model = lm.model
    names = []
    for name, mod in list(model.named_modules()):
        if isinstance(mod, Conv1D):
            lin = torch.nn.Linear(mod.weight.shape[0], mod.weight.shape[1])
            with torch.no_grad():
                lin.weight.copy_(mod.weight.T)
                lin.bias.copy_(mod.bias)
            parent, child = name.rsplit(".", 1)
            setattr(model.get_submodule(parent), child, lin)
            names.append(name)
    pad = lm.tokenizer.pad_token_id
    train_enc, _ = encode_examples(train_rows_, lm.tokenizer, "causal", max_length)
    query_enc, _ = encode_examples(query_rows, lm.tokenizer, "causal", max_length)

    def loss_sum(batch: dict, mdl: torch.nn.Module, sample: bool) -> torch.Tensor:
        logits = mdl(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1].float()
        target = batch["labels"][:, 1:]
        if sample:
            with torch.no_grad():
                sel = target != IGNORE
                target = target.clone()
                target[sel] = torch.multinomial(torch.softmax(logits[sel], -1), 1).squeeze(-1)
        return torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=IGNORE, reduction="sum")

    class SFTTask(Task):
        def compute_train_loss(self, batch, model, sample=False):
            return loss_sum(batch, model, sample)

        def compute_measurement(self, batch, model):
            return loss_sum(batch, model, False)

        def get_influence_tracked_modules(self):
            return names

        def get_attention_mask(self, batch):
            return batch["attention_mask"]

    class Listed(torch.utils.data.Dataset):
        def __init__(self, items: list) -> None:
            self.items = items

        def __len__(self) -> int:
            return len(self.items)

        def __getitem__(self, i: int):
            return self.items[i]

    model = prepare_model(model, SFTTask())
    analyzer = Analyzer("parity", model, SFTTask(), output_dir=str(work), disable_tqdm=True, disable_model_save=True)
    analyzer.set_dataloader_kwargs(DataLoaderKwargs(collate_fn=lambda items: collate(items, pad, "causal")))
    n = n_factor or len(train_enc)
    fargs = FactorArguments(strategy="ekfac", use_empirical_fisher=fisher == "empirical",
                            covariance_max_examples=n, lambda_max_examples=n)
    t0 = time.process_time()
    analyzer.fit_all_factors("f", Listed(train_enc), per_device_batch_size=batch_size, factor_args=fargs,
                             overwrite_output_dir=True)
    analyzer.compute_pairwise_scores("s", "f", Listed(query_enc), Listed(train_enc),
                                     per_device_query_batch_size=len(query_enc), per_device_train_batch_size=batch_size,
                                     score_args=ScoreArguments(damping_factor=None), overwrite_output_dir=True)
    elapsed = time.process_time() - t0
    return elapsed, analyzer.load_pairwise_scores("s")["all_modules"].T.double()
