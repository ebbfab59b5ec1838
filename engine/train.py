"""Train the demo model: a small GPT-2 with its own BPE tokenizer, loss on the answer tokens only.

    result = train_model(rows, Path("models/demo"), config=TrainConfig(epochs=6))

``rows`` are mappings with ``definition``, ``input`` and ``output`` (the canonical example
fields). Prompts come from ``engine.prompts`` and encoding from ``engine.batching``, the same
code the influence engine differentiates, so the scanned loss is the trained loss.

Layout of ``out_dir`` (every directory loads with ``engine.models.load_model``)::

    config.json, model.safetensors, tokenizer files, training_info.json   the final model
    checkpoint-epoch-N/   the model after epoch N, plus optimizer.pt and trainer_state.json

Checkpoints are written to a temporary directory and renamed, so one that exists is complete.
``resume=True`` continues from the newest one; the data order of epoch N depends only on
(seed, N) and the dropout RNG is reseeded per epoch, so a resumed run ends with the same
weights as an uninterrupted one. ``base_model`` continues training a local Hugging Face
causal LM (safetensors only) with its own tokenizer instead of a fresh GPT-2.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import InputError, UserError
from engine.progress import CancelToken, ProgressFn, Stage, no_progress
from engine.prompts import DEFAULT_FORMAT, PromptFormat

CHECKPOINT_PREFIX = "checkpoint-epoch-"
STATE_FILE = "trainer_state.json"
INFO_FILE = "training_info.json"
EOS, PAD = "<|endoftext|>", "<|pad|>"


@dataclass(frozen=True)
class TrainConfig:
    """The recipe. Defaults: ~1.1 M parameters, learns sample_data and its backdoor in ~6 epochs."""

    epochs: int = 6
    batch_size: int = 16
    # 2e-3 left one of four seeds on a single-class plateau (the pilot saw the same); 1e-3
    # learned the tasks and the backdoor on all four (sweep in the task report)
    lr: float = 1e-3
    weight_decay: float = 0.01
    warmup_frac: float = 0.05
    seed: int = 0
    max_length: int = 256
    vocab_size: int = 2048
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    dropout: float = 0.0
    threads: int | None = None  # torch intra-op threads; None keeps torch's default

    def recipe(self) -> dict[str, Any]:
        """What determines the weights (threads and epochs do not change earlier epochs)."""
        d = asdict(self)
        d.pop("threads")
        d.pop("epochs")
        return d


@dataclass
class TrainResult:
    out_dir: Path
    epochs: int
    n_examples: int
    history: list[dict[str, float]] = field(default_factory=list)  # per epoch: epoch, loss, seconds
    resumed_from: int | None = None  # epoch of the checkpoint a resumed run started from
    reused: bool = False  # the finished model in out_dir already matched; nothing was trained
    n_truncated: int = 0


def train_model(
    rows: Sequence[Mapping[str, Any]],
    out_dir: Path,
    *,
    config: TrainConfig | None = None,
    base_model: Path | None = None,
    fmt: PromptFormat = DEFAULT_FORMAT,
    resume: bool = False,
    progress: ProgressFn = no_progress,
    token: CancelToken | None = None,
) -> TrainResult:
    """Train on ``rows`` and save an HF directory per epoch and at ``out_dir``.

    ``resume``: continue from the newest complete checkpoint in ``out_dir`` (or return at once
    when the final model there was trained on the same data with the same recipe). Without it,
    a non-empty ``out_dir`` holding an earlier run is an error rather than silently mixed.
    """
    import torch

    config = config or TrainConfig()
    if config.epochs < 1:
        raise UserError(f"epochs must be at least 1, got {config.epochs}")
    texts = _check_rows(rows)
    out_dir = Path(out_dir)
    fingerprint = _fingerprint(texts, config, base_model, fmt)
    if config.threads:
        torch.set_num_threads(config.threads)

    info = _read_json(out_dir / INFO_FILE)
    if resume and info and info.get("fingerprint") == fingerprint and info.get("epochs") == config.epochs:
        return TrainResult(out_dir, config.epochs, len(rows), info.get("history", []), reused=True)
    start = _latest_checkpoint(out_dir, fingerprint) if resume else None
    if not resume and (info or _checkpoints(out_dir)):
        raise UserError(f"{out_dir}: holds an earlier training run; pass --resume to continue it or choose another --out")

    from engine.batching import collate, encode_examples

    _remove_stale_temps(out_dir)
    if start is not None:
        ckpt, state = start
        model, tokenizer = _load_model(ckpt)
    else:
        state = None
        model, tokenizer = _new_model(texts, config, base_model, fmt)
    encoded, n_truncated = encode_examples(rows, tokenizer, "causal", config.max_length, fmt)

    batches_per_epoch = len(_epoch_batches(encoded, config, 1))
    total_steps = batches_per_epoch * config.epochs
    optimizer = _optimizer(model, config)
    scheduler = _scheduler(optimizer, config, total_steps)
    history: list[dict[str, float]] = []
    first_epoch = 1
    if state is not None:
        optimizer.load_state_dict(torch.load(start[0] / "optimizer.pt", weights_only=True))
        scheduler.load_state_dict(state["scheduler"])
        history = state["history"]
        first_epoch = state["epoch"] + 1
        if state["total_steps"] != total_steps:
            raise UserError(
                f"{start[0]}: was trained for {state['total_steps'] // batches_per_epoch} epochs in all; "
                f"resume with --epochs {state['total_steps'] // batches_per_epoch} (the schedule depends on it)"
            )

    model.train()
    pad_id = tokenizer.pad_token_id
    with Stage(progress, "train", total_steps, token) as stage:
        stage.done = (first_epoch - 1) * batches_per_epoch
        for epoch in range(first_epoch, config.epochs + 1):
            t0 = time.monotonic()
            torch.manual_seed(config.seed * 1000 + epoch)  # dropout stream, independent of resume
            total, n = 0.0, 0
            for batch_idx in _epoch_batches(encoded, config, epoch):
                batch = collate([encoded[i] for i in batch_idx], pad_id, "causal")
                loss = model(**batch).loss
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                total += float(loss.detach()) * len(batch_idx)
                n += len(batch_idx)
                stage.advance(message=f"epoch {epoch}/{config.epochs} loss {total / n:.3f}")
            history.append({"epoch": epoch, "loss": total / n, "seconds": time.monotonic() - t0})
            _save_checkpoint(out_dir, epoch, model, tokenizer, optimizer, {
                "epoch": epoch, "fingerprint": fingerprint, "total_steps": total_steps,
                "scheduler": scheduler.state_dict(), "history": history,
            })
    model.eval()
    _save_final(out_dir, model, tokenizer, {
        "fingerprint": fingerprint, "epochs": config.epochs, "n_examples": len(rows),
        "recipe": config.recipe(), "base_model": str(base_model) if base_model else None,
        "prompt_template": fmt.template, "history": history, "n_truncated": n_truncated,
    })
    return TrainResult(out_dir, config.epochs, len(rows), history,
                       resumed_from=state["epoch"] if state else None, n_truncated=n_truncated)


def load_train_rows(path: Path) -> list[dict[str, Any]]:
    """Training rows of a workspace (with their ``uid``), or of a data file in any ingest format."""
    path = Path(path)
    if (path / "poison.db").is_file() or path.name == "poison.db":
        from engine.workspace import Workspace

        ws = Workspace.open(path)
        try:
            cur = ws.conn.execute(
                "SELECT uid, task, definition, input, output, label_space FROM examples "
                "WHERE role = 'train' ORDER BY dataset_id, ordinal"
            )
            rows = [dict(r) for r in cur]
        finally:
            ws.close()
        if not rows:
            raise UserError(f"{path}: the workspace holds no training examples")
        return rows
    from engine.formats import read_dataset

    result = read_dataset(path)
    return [{"task": r.task, "definition": r.definition, "input": r.input, "output": r.output,
             "label_space": r.label_space} for r in result.records]


def checkpoint_dirs(out_dir: Path) -> list[Path]:
    """The complete epoch checkpoints in ``out_dir``, oldest first."""
    return [p for _, p in _checkpoints(Path(out_dir))]


# -- data -------------------------------------------------------------------------------------
def _check_rows(rows: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    if not rows:
        raise UserError("no training examples")
    out = []
    for i, r in enumerate(rows):
        for key in ("definition", "input", "output"):
            if not isinstance(r.get(key), str):
                raise InputError(f"training row {i} has no text '{key}'", field=key)
        if not r["output"].strip():
            raise InputError(f"training row {i} has an empty output: nothing to learn", field="output")
        out.append((r["definition"], r["input"], r["output"]))
    return out


def _fingerprint(texts: list[tuple[str, str, str]], config: TrainConfig, base: Path | None,
                 fmt: PromptFormat) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([config.recipe(), str(base) if base else None, asdict(fmt)], sort_keys=True).encode())
    for t in texts:
        h.update(json.dumps(t).encode())
    return h.hexdigest()


def _epoch_batches(encoded: Sequence[Any], config: TrainConfig, epoch: int) -> list[list[int]]:
    """Length-bucketed batches in an order fixed by (seed, epoch).

    Shuffle, cut into windows of 32 batches, sort each window by length (little padding), then
    shuffle the batches: cheap batches without the fixed composition of one global sort.
    """
    from engine.batching import length_sorted_batches

    rng = random.Random(f"{config.seed}/{epoch}")
    order = list(range(len(encoded)))
    rng.shuffle(order)
    window = config.batch_size * 32
    batches: list[list[int]] = []
    for w in range(0, len(order), window):
        idx = order[w : w + window]
        batches += [[idx[j] for j in b] for b in length_sorted_batches([encoded[i] for i in idx], config.batch_size)]
    rng.shuffle(batches)
    return batches


# -- model ------------------------------------------------------------------------------------
def train_tokenizer(texts: Sequence[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, wrapped as a PreTrainedTokenizerFast."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=[EOS, PAD], initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, pad_token=PAD,
                                   model_max_length=1_000_000)


def _new_model(texts: list[tuple[str, str, str]], config: TrainConfig, base: Path | None,
               fmt: PromptFormat) -> tuple[Any, Any]:
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(config.seed)
    if base is not None:
        return _load_model(base)
    corpus = [fmt.prompt(d, i) + fmt.answer(o) for d, i, o in texts]
    tokenizer = train_tokenizer(corpus, config.vocab_size)
    cfg = GPT2Config(
        vocab_size=len(tokenizer), n_positions=config.max_length, n_embd=config.n_embd, n_layer=config.n_layer,
        n_head=config.n_head, resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(cfg), tokenizer


def _load_model(path: Path) -> tuple[Any, Any]:
    from engine.models import load_model

    loaded = load_model(path, device="cpu")
    if loaded.kind != "causal":
        raise UserError(f"{path}: only causal language models can be trained here (this one is {loaded.kind})")
    return loaded.model, loaded.tokenizer


def _optimizer(model: Any, config: TrainConfig) -> Any:
    import torch

    # No weight decay on biases and LayerNorm gains: decaying them only hurts.
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=config.lr, betas=(0.9, 0.98),
    )


def _scheduler(optimizer: Any, config: TrainConfig, total_steps: int) -> Any:
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, max(1, int(config.warmup_frac * total_steps)), total_steps)


# -- files ------------------------------------------------------------------------------------
def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _checkpoints(out_dir: Path) -> list[tuple[int, Path]]:
    found = []
    if out_dir.is_dir():
        for p in out_dir.iterdir():
            suffix = p.name[len(CHECKPOINT_PREFIX):]
            if p.name.startswith(CHECKPOINT_PREFIX) and suffix.isdigit() and (p / STATE_FILE).is_file():
                found.append((int(suffix), p))
    return sorted(found)


def _latest_checkpoint(out_dir: Path, fingerprint: str) -> tuple[Path, dict] | None:
    found = _checkpoints(out_dir)
    if not found:
        return None
    path = found[-1][1]
    state = _read_json(path / STATE_FILE)
    if not state or state.get("fingerprint") != fingerprint:
        raise UserError(
            f"{path}: this checkpoint was trained on other data or with another recipe; "
            "resume with the same data and options, or choose another --out"
        )
    return path, state


def _remove_stale_temps(out_dir: Path) -> None:
    # a run killed while saving leaves its temporary directory; it never became a checkpoint
    if out_dir.is_dir():
        for p in out_dir.glob(".*"):
            if p.is_dir() and (p.name.startswith(f".{CHECKPOINT_PREFIX}") or p.name.startswith(".final.")):
                shutil.rmtree(p, ignore_errors=True)


def _save_hf(directory: Path, model: Any, tokenizer: Any) -> None:
    from transformers.utils import logging as hf_logging

    # save_pretrained draws a "Writing model shards" bar per call; ours is the only progress shown
    shown = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(directory, safe_serialization=True)
        tokenizer.save_pretrained(directory)
    finally:
        if shown:
            hf_logging.enable_progress_bar()


def _save_checkpoint(out_dir: Path, epoch: int, model: Any, tokenizer: Any, optimizer: Any, state: dict) -> None:
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{CHECKPOINT_PREFIX}{epoch}"
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=f".{final.name}."))
    try:
        _save_hf(tmp, model, tokenizer)
        torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=1))
        tmp.chmod(0o755)  # mkdtemp makes it private; a checkpoint is as readable as the model
        if final.exists():  # a leftover of a run that was killed after this epoch; same content
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _save_final(out_dir: Path, model: Any, tokenizer: Any, info: dict) -> None:
    # Save beside the checkpoints, then move each file into place; training_info.json goes
    # last, so its presence means the final model is whole.
    from engine.atomic import atomic_write_bytes

    (out_dir / INFO_FILE).unlink(missing_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".final."))
    try:
        _save_hf(tmp, model, tokenizer)
        for f in sorted(tmp.iterdir()):
            os.replace(f, out_dir / f.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_bytes(out_dir / INFO_FILE, json.dumps(info, indent=1).encode())
