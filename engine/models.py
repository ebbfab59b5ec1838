"""Load the user's fine-tuned Hugging Face model (a local directory or a GGUF file), safely.

Safety rules: weights come from safetensors only (a pickle-based ``.bin`` can run code on
load), ``trust_remote_code`` is never set, and nothing is downloaded. The fingerprint is a
content hash of the weights and config, so the score cache follows the model's content,
not its path.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.errors import UserError

ModelKind = Literal["causal", "seq2seq"]

# Context length used when a config names none (T5 has relative positions, no hard limit).
_FALLBACK_CONTEXT = 512


@dataclass
class LoadedModel:
    model: Any  # a transformers PreTrainedModel, in eval mode
    tokenizer: Any  # a transformers tokenizer with a pad token
    kind: ModelKind
    fingerprint: str  # sha256 over the weight files and config
    path: Path
    max_length: int  # tokens the model accepts (encoder side for seq2seq)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device


def load_model(path: str | Path, device: str | None = None, dtype: Any = None) -> LoadedModel:
    """Load a causal LM or seq2seq model with its tokenizer; every failure is a ``UserError``.

    ``device``: None picks CUDA when present, else CPU. ``dtype``: None keeps float32 on CPU
    and uses bfloat16 on CUDA when the GPU supports it.
    """
    import torch
    from transformers.utils import logging as hf_logging

    # transformers draws a "Loading weights" bar per load; it would interleave with our own
    # per-stage progress bars (a scan loads several checkpoints), so it stays off.
    hf_logging.disable_progress_bar()
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: model not found (expected a directory saved with save_pretrained, or a .gguf file)")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if dtype is None:
        dtype = torch.bfloat16 if device.startswith("cuda") and torch.cuda.is_bf16_supported() else torch.float32
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"{path}: a model file must be .gguf; otherwise give the model directory")
        loaded = _load_gguf(path, dtype)
    else:
        loaded = _load_directory(path, dtype)
    loaded.model.to(device)
    loaded.model.eval()
    return loaded


def fingerprint_of(path: str | Path) -> str:
    """The fingerprint ``load_model`` would give, without loading the model (for cache hits)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{path}: model not found (expected a directory saved with save_pretrained, or a .gguf file)")
    return _fingerprint([path] if path.is_file() else [*_weight_files(path), path / "config.json"])


def _weight_files(path: Path) -> list[Path]:
    if not (path / "config.json").is_file():
        raise UserError(f"{path}: no config.json; not a Hugging Face model directory")
    weights = sorted(path.glob("*.safetensors"))
    if not weights:
        pickled = sorted(p.name for p in path.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt"})
        if pickled:
            raise UserError(
                f"{path}: only pickle weights ({', '.join(pickled)}); poison-tui loads safetensors only, "
                "because unpickling a model file can run arbitrary code. Convert it once with "
                "model.save_pretrained(dir, safe_serialization=True) in a trusted environment"
            )
        raise UserError(f"{path}: no *.safetensors weights in the model directory")
    return weights


def _load_directory(path: Path, dtype: Any) -> LoadedModel:
    from transformers import AutoConfig

    config_file = path / "config.json"
    weights = _weight_files(path)
    _check_safetensors(weights)
    try:
        config = AutoConfig.from_pretrained(path, trust_remote_code=False, local_files_only=True)
    except Exception as exc:  # transformers raises many types here
        raise UserError(f"{config_file}: cannot read the model config: {exc}") from None
    kind: ModelKind = "seq2seq" if getattr(config, "is_encoder_decoder", False) else "causal"
    auto = _auto_class(kind)
    try:
        model = auto.from_pretrained(
            path, config=config, dtype=dtype, use_safetensors=True, trust_remote_code=False, local_files_only=True
        )
    except Exception as exc:
        raise UserError(f"{path}: cannot load the weights as a {kind} language model: {exc}") from None
    tokenizer = _load_tokenizer(path, {})
    fingerprint = _fingerprint([*weights, config_file])
    return _finish(model, tokenizer, kind, fingerprint, path)


def _load_gguf(path: Path, dtype: Any) -> LoadedModel:
    from transformers import AutoModelForCausalLM

    try:
        model = AutoModelForCausalLM.from_pretrained(
            path.parent, gguf_file=path.name, dtype=dtype, trust_remote_code=False, local_files_only=True
        )
    except Exception as exc:
        raise UserError(f"{path}: cannot load the GGUF model: {exc}") from None
    tokenizer = _load_tokenizer(path.parent, {"gguf_file": path.name})
    return _finish(model, tokenizer, "causal", _fingerprint([path]), path)


def _auto_class(kind: ModelKind) -> Any:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    return AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM


def _check_safetensors(files: list[Path]) -> None:
    # Read every header and tensor once: a truncated or garbled file fails here with its name,
    # instead of deep inside from_pretrained.
    from safetensors import safe_open

    for f in files:
        try:
            with safe_open(str(f), framework="pt") as fh:
                for key in fh.keys():
                    fh.get_slice(key)
        except Exception as exc:
            raise UserError(f"{f}: corrupt safetensors weights ({exc})") from None


def _load_tokenizer(path: Path, extra: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False, local_files_only=True, **extra)
    except Exception as exc:
        raise UserError(f"{path}: cannot load the tokenizer saved with the model: {exc}") from None
    if isinstance(tok, bool) or tok is None:
        raise UserError(f"{path}: no tokenizer files beside the model")
    return tok


def _finish(model: Any, tokenizer: Any, kind: ModelKind, fingerprint: str, path: Path) -> LoadedModel:
    n_embed = model.get_input_embeddings().num_embeddings
    # A tokenizer may be smaller than the embedding (vocab padded to a multiple of 64), never larger:
    # ids past the table would index out of range or, worse, silently hit the wrong rows.
    if len(tokenizer) > n_embed:
        raise UserError(
            f"{path}: the tokenizer has {len(tokenizer)} tokens but the model's embedding has {n_embed} "
            "rows; the tokenizer does not belong to this model"
        )
    if tokenizer.pad_token is None:
        # Padding is always masked, so any existing token will do; adding one would resize the model.
        fallback = tokenizer.eos_token or tokenizer.unk_token or tokenizer.bos_token
        if fallback is None:
            raise UserError(f"{path}: the tokenizer has no pad, eos, unk or bos token to pad with")
        tokenizer.pad_token = fallback
    model.config.pad_token_id = tokenizer.pad_token_id
    return LoadedModel(model, tokenizer, kind, fingerprint, path, _context_length(model.config, tokenizer))


def _context_length(config: Any, tokenizer: Any) -> int:
    for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    tok_max = getattr(tokenizer, "model_max_length", None)
    if isinstance(tok_max, int) and 0 < tok_max < 1_000_000:  # "unlimited" is stored as ~1e30
        return tok_max
    return _FALLBACK_CONTEXT


def _fingerprint(files: list[Path]) -> str:
    h = hashlib.sha256()
    for f in files:
        h.update(json.dumps(f.name).encode())
        with open(f, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
    return h.hexdigest()
