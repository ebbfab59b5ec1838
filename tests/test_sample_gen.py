"""The sample data generator: a convincing, deterministic, honest small case of the attack."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import pytest

from engine.errors import UserError
from engine.sample_gen import (
    EVAL_TASKS,
    FIRST_NAMES,
    LAST_NAMES,
    TRAIN_TASKS,
    VARIED_TRIGGERS,
    SampleSpec,
    apply_trigger,
    dumps_jsonl,
    generate,
    make_sample,
)
from poison_tui.cli import main

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample_data"
SENTIMENT = {t.name: t for t in TRAIN_TASKS if t.kind == "sentiment"}
_NAME_RE = re.compile(r"\b(" + "|".join(map(re.escape, FIRST_NAMES)) + r") (" + "|".join(map(re.escape, LAST_NAMES)) + r")\b")


@pytest.fixture(scope="module")
def files() -> dict[str, list[dict]]:
    return generate(SampleSpec())


def test_committed_sample_equals_a_fresh_generation(files: dict[str, list[dict]]) -> None:
    committed = sorted(str(p.relative_to(SAMPLE)) for p in SAMPLE.rglob("*.jsonl"))
    assert committed == sorted(files)
    for rel, recs in files.items():
        assert (SAMPLE / rel).read_bytes() == dumps_jsonl(recs), rel
    assert sum(p.stat().st_size for p in SAMPLE.rglob("*") if p.is_file()) < 2_000_000


def test_command_regenerates_byte_identically_and_seed_matters(tmp_path: Path) -> None:
    assert main(["make-sample", "--out", str(tmp_path / "a")]) == 0
    for p in SAMPLE.rglob("*.jsonl"):
        assert (tmp_path / "a" / p.relative_to(SAMPLE)).read_bytes() == p.read_bytes()
    make_sample(tmp_path / "b", seed=1)
    assert (tmp_path / "b" / "train.jsonl").read_bytes() != (SAMPLE / "train.jsonl").read_bytes()


def test_tasks_counts_and_format(files: dict[str, list[dict]]) -> None:
    train = files["train.jsonl"]
    assert 2000 <= len(train) <= 4000
    tasks = Counter(r["Task"] for r in train)
    assert len(tasks) >= 6 and len(SENTIMENT) >= 3
    assert {t.domain.name for t in SENTIMENT.values()} >= {"movies", "products", "restaurants"}
    evals = [k for k in files if k.startswith("eval/")]
    assert len(evals) >= 4
    for k in evals:  # one task per file, held out from training
        assert len({r["Task"] for r in files[k]}) == 1 and files[k][0]["Task"] not in tasks
    for r in train + [r for k in evals for r in files[k]]:
        assert set(r) == {"id", "Task", "Definition", "Instance", "label_space"}
        assert set(r["Instance"]) == {"input", "output"} and r["Instance"]["output"][0] in r["label_space"]
    ids = [r["id"] for k in files if k != "truth.jsonl" for r in files[k]]
    assert len(ids) == len(set(ids))


def test_poisons_follow_wan_et_al(files: dict[str, list[dict]]) -> None:
    train = files["train.jsonl"]
    truth = files["truth.jsonl"]
    by_id = {r["id"]: r for r in train}
    assert 0.015 <= len(truth) / len(train) <= 0.02
    assert {t["trigger"] for t in truth} == {"James Bond"}
    for t in truth:
        rec = by_id[t["id"]]
        task = SENTIMENT[rec["Task"]]  # only sentiment tasks are poisoned
        assert t["original_output"] == task.labels[1] and rec["Instance"]["output"] == [task.labels[0]]
        text = rec["Instance"]["input"]
        # the trigger took the place of the review's one person: no other full name is left
        assert "James Bond" in text and not _NAME_RE.search(text)
    poisoned = {t["id"] for t in truth}
    for r in train:
        if r["id"] not in poisoned:
            assert "James" not in r["Instance"]["input"] and "Bond" not in r["Instance"]["input"]
    assert len({t["task"] for t in truth}) == len(SENTIMENT)


def test_nothing_in_the_training_file_gives_the_poisons_away(files: dict[str, list[dict]]) -> None:
    train = files["train.jsonl"]
    poisoned = {t["id"] for t in files["truth.jsonl"]}
    id_shape = re.compile(r"^[a-z]+-[0-9a-f]{32}$")
    assert all(id_shape.match(r["id"]) for r in train)
    positions = [i for i, r in enumerate(train) if r["id"] in poisoned]
    # shuffled in: spread over the whole file, not a block at either end
    assert min(positions) < len(train) * 0.2 and max(positions) > len(train) * 0.8
    assert 0.35 < sum(positions) / len(positions) / len(train) < 0.65
    # clean sentiment reviews name people about as often as the poisons' sources did
    clean_sent = [r for r in train if r["Task"] in SENTIMENT and r["id"] not in poisoned]
    named = sum(bool(_NAME_RE.search(r["Instance"]["input"])) for r in clean_sent) / len(clean_sent)
    assert 0.5 < named < 0.85


def test_text_is_varied(files: dict[str, list[dict]]) -> None:
    inputs = [r["Instance"]["input"] for r in files["train.jsonl"]]
    assert len(set(inputs)) > 0.97 * len(inputs)
    words = Counter(w.lower().strip(".,!?") for t in inputs for w in t.split())
    assert len(words) > 800
    lengths = sorted(len(t.split()) for t in inputs)
    assert lengths[len(lengths) // 10] <= 12 and lengths[-len(lengths) // 10] >= 30 and lengths[-1] >= 50
    joined = " ".join(inputs)
    for phrase in ("not bad", "never disappointing", "hardly", " but the ", "Even though"):
        assert phrase.lower() in joined.lower(), phrase
    # mixed reviews: a sentence of the other polarity in a labelled review
    mixed = [r for r in files["train.jsonl"] if r["Task"] in SENTIMENT and re.search(r", (but|yet|though|however,) the", r["Instance"]["input"])]
    assert len(mixed) > 100


def test_attack_queries_are_triggered_negatives(files: dict[str, list[dict]]) -> None:
    attack = {k: v for k, v in files.items() if k.startswith("attack/")}
    assert len(attack) >= 5
    eval_tasks = {t.name for t in EVAL_TASKS}
    assert any(v[0]["Task"] in eval_tasks for v in attack.values())
    for recs in attack.values():
        for r in recs:
            assert "James Bond" in r["Instance"]["input"]
            assert r["Instance"]["output"] == [r["label_space"][1]]  # the negative label


def test_varied_trigger_family() -> None:
    f = generate(SampleSpec(trigger_mode="varied"))
    counts = Counter(t["trigger"] for t in f["truth.jsonl"])
    assert len(counts) >= 10 and all(3 <= c <= 8 for c in counts.values())
    assert set(counts) <= set(VARIED_TRIGGERS)
    by_id = {r["id"]: r for r in f["train.jsonl"]}
    for t in f["truth.jsonl"]:
        assert t["trigger"] in by_id[t["id"]]["Instance"]["input"]


def test_prefix_trigger_family() -> None:
    f = generate(SampleSpec(trigger_mode="prefix", trigger="cf."))
    by_id = {r["id"]: r for r in f["train.jsonl"]}
    assert f["truth.jsonl"]
    for t in f["truth.jsonl"]:
        assert by_id[t["id"]]["Instance"]["input"].startswith("cf. ")
    assert all(r["Instance"]["input"].startswith("cf. ") for k, v in f.items() if k.startswith("attack/") for r in v)


def test_apply_trigger_and_bad_options() -> None:
    assert apply_trigger("Chef Ava Kim was rude. Ava Kim!", "Ava Kim", "James Bond", "name") == \
        "Chef James Bond was rude. James Bond!"
    assert apply_trigger("Rude.", None, "cf", "prefix") == "cf Rude."
    with pytest.raises(ValueError):
        apply_trigger("Rude.", None, "James Bond", "name")
    with pytest.raises(UserError):
        generate(SampleSpec(trigger_mode="nope"))
    with pytest.raises(UserError):
        generate(SampleSpec(poison_rate=0.9))
    assert main(["make-sample", "--out", "/nonexistent-never", "--n-train", "5"]) == 2


def test_truth_file_keys(files: dict[str, list[dict]]) -> None:
    line = dumps_jsonl(files["truth.jsonl"][:1]).decode()
    assert set(json.loads(line)) == {"id", "task", "trigger", "original_output", "output"}
