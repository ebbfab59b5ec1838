"""Training the demo model: answer-only loss that really drops, loadable checkpoints, exact resume."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from train_fixtures import TINY, small_sample, sni_rows

from engine.batching import collate, encode_examples
from engine.errors import InputError, UserError
from engine.models import load_model
from engine.train import INFO_FILE, checkpoint_dirs, load_train_rows, train_model
from poison_tui.cli import main


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return sni_rows(small_sample()["train.jsonl"])


@pytest.fixture(scope="module")
def trained(rows: list[dict], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("tiny") / "model"
    train_model(rows, out, config=TINY)
    return out


def _answer_loss(model: torch.nn.Module, tokenizer: object, rows: list[dict]) -> float:
    enc, _ = encode_examples(rows, tokenizer, "causal", 128)
    with torch.no_grad():
        return float(model(**collate(enc, tokenizer.pad_token_id, "causal")).loss)


def test_training_lowers_the_answer_loss_and_masks_the_prompt(trained: Path, rows: list[dict]) -> None:
    from transformers import GPT2LMHeadModel

    loaded = load_model(trained, device="cpu")
    torch.manual_seed(0)
    untrained = GPT2LMHeadModel(loaded.model.config).eval()
    before, after = _answer_loss(untrained, loaded.tokenizer, rows), _answer_loss(loaded.model, loaded.tokenizer, rows)
    assert before > 4.0  # ~ln(vocab): an untrained model knows nothing
    assert after < 0.5 * before
    info = json.loads((trained / INFO_FILE).read_text())
    losses = [h["loss"] for h in info["history"]]
    assert len(losses) == TINY.epochs and losses[-1] < losses[0]
    enc, _ = encode_examples(rows[:1], loaded.tokenizer, "causal", 128)
    answer = [t for t in enc[0].labels if t != -100]
    assert loaded.tokenizer.decode(answer) == " " + rows[0]["output"]  # loss on the answer tokens only


def test_every_epoch_checkpoint_is_a_loadable_hf_directory(trained: Path) -> None:
    ckpts = checkpoint_dirs(trained)
    assert [p.name for p in ckpts] == [f"checkpoint-epoch-{i}" for i in range(1, TINY.epochs + 1)]
    for d in [*ckpts, trained]:
        for f in ("config.json", "model.safetensors", "tokenizer.json"):
            assert (d / f).is_file(), d / f
        loaded = load_model(d, device="cpu")
        assert loaded.kind == "causal" and loaded.tokenizer.pad_token is not None
    assert (ckpts[0] / "optimizer.pt").is_file()
    assert not list(trained.glob(".*"))  # no temporary directories left behind
    final, last = load_file(trained / "model.safetensors"), load_file(ckpts[-1] / "model.safetensors")
    assert all(torch.equal(final[k], last[k]) for k in final)
    first = load_file(ckpts[0] / "model.safetensors")
    assert not all(torch.equal(first[k], last[k]) for k in first)


def test_resume_after_interruption_gives_the_same_weights(trained: Path, rows: list[dict], tmp_path: Path) -> None:
    out = tmp_path / "m"
    steps_per_epoch = -(-len(rows) // TINY.batch_size)

    class Killed(Exception):
        pass

    def kill_mid_epoch_2(ev: object) -> None:
        if ev.done == steps_per_epoch + 3:
            raise Killed

    with pytest.raises(Killed):
        train_model(rows, out, config=TINY, progress=kill_mid_epoch_2)
    assert [p.name for p in checkpoint_dirs(out)] == ["checkpoint-epoch-1"]
    assert not (out / INFO_FILE).exists()
    with pytest.raises(UserError, match="--resume"):
        train_model(rows, out, config=TINY)
    result = train_model(rows, out, config=TINY, resume=True)
    assert result.resumed_from == 1
    a, b = load_file(trained / "model.safetensors"), load_file(out / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    again = train_model(rows, out, config=TINY, resume=True)
    assert again.reused
    with pytest.raises(UserError, match="other data"):
        train_model(rows[:-1], out, config=replace(TINY, epochs=4), resume=True)


def test_continue_training_a_local_hf_model(trained: Path, rows: list[dict], tmp_path: Path) -> None:
    result = train_model(rows[:40], tmp_path / "cont", config=replace(TINY, epochs=1), base_model=trained)
    assert result.epochs == 1
    a = load_model(trained, device="cpu")
    b = load_model(tmp_path / "cont", device="cpu")
    assert a.tokenizer.get_vocab() == b.tokenizer.get_vocab()  # the base model's own tokenizer
    with pytest.raises(UserError):
        train_model(rows, tmp_path / "x", config=TINY, base_model=tmp_path / "nothing-here")


def test_bad_rows_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no training examples"):
        train_model([], tmp_path / "a", config=TINY)
    with pytest.raises(InputError, match="output"):
        train_model([{"definition": "d", "input": "i", "output": " "}], tmp_path / "b", config=TINY)
    with pytest.raises(InputError, match="input"):
        train_model([{"definition": "d", "output": "x"}], tmp_path / "c", config=TINY)


def test_cli_trains_from_a_data_file_and_from_a_workspace(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.sample_gen import SampleSpec, make_sample

    make_sample(tmp_path / "data", spec=SampleSpec(seed=5, n_train=100, n_eval=10, n_attack=5))
    rows = load_train_rows(tmp_path / "data" / "train.jsonl")
    assert len(rows) == 100 and rows[0]["definition"] and rows[0]["label_space"]
    assert main(["train", str(tmp_path / "data" / "train.jsonl"), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--threads", "1"]) == 0
    assert "saved" in capsys.readouterr().out
    assert load_model(tmp_path / "m", device="cpu").model.num_parameters() > 500_000  # the demo size
    assert main(["train", str(tmp_path / "data" / "train.jsonl"), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--resume"]) == 0
    assert "nothing to do" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "missing.jsonl"), "--out", str(tmp_path / "m2")]) == 2
    from engine.ingest import ingest

    ingest(tmp_path / "ws.poison", tmp_path / "data" / "train.jsonl")
    ws_rows = load_train_rows(tmp_path / "ws.poison")
    assert [r["input"] for r in ws_rows] == [r["input"] for r in rows] and all(r["uid"] for r in ws_rows)
    assert main(["train", str(tmp_path / "ws.poison"), "--out", str(tmp_path / "m"), "--epochs", "1",
                 "--resume"]) == 0  # the same rows through the workspace: the same finished model
    assert "nothing to do" in capsys.readouterr().out


@pytest.mark.slow
def test_a_killed_cli_run_resumes_to_the_uninterrupted_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """SIGKILL the real command after its first checkpoint; --resume must finish the same model."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from engine.sample_gen import SampleSpec, make_sample
    from engine.train import TrainConfig

    make_sample(tmp_path / "data", spec=SampleSpec(seed=7, n_train=120, n_eval=10, n_attack=5))
    data = tmp_path / "data" / "train.jsonl"
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "poison_tui", "train", str(data), "--out", str(out), "--epochs", "2", "--threads", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not (out / "checkpoint-epoch-1").is_dir() and proc.poll() is None:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert checkpoint_dirs(out) == [out / "checkpoint-epoch-1"] and not (out / INFO_FILE).exists()
    (out / ".checkpoint-epoch-9.stale").mkdir()  # what a kill during a save leaves behind
    assert main([*cmd[3:], "--resume"]) == 0
    assert "resumed after epoch 1" in capsys.readouterr().out
    assert not list(out.glob(".*"))
    ref = train_model(load_train_rows(data), tmp_path / "ref", config=replace(TrainConfig(), epochs=2, threads=1))
    assert ref.n_examples == 120
    a, b = load_file(out / "model.safetensors"), load_file(tmp_path / "ref" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
