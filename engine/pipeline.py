"""The detection pipeline end to end, and the demo on ``sample_data/``.

``detect``: mine trigger candidates (no model) -> with a model: transformed, sentiment-guided
and confirmed-trigger query sets -> one EK-FAC scan over every set -> all detectors. Every step
is cached by content (train data, model fingerprints, settings), so a repeated call with the
same inputs only re-reads the workspace.

Influence settings follow the pilot (``docs`` / ``notes/detection-pilot.md``): the label-space
measurement and per-example normalisation, at an earlier checkpoint when one is given.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import UserError
from engine.hashing import sha256_file, sha256_hex
from engine.progress import CancelToken, ProgressFn, Stage, no_progress
from engine.workspace import Workspace

SAMPLE_DIR = Path(__file__).resolve().parents[1] / "sample_data"
# The demo model's influence checkpoint: early, before the poisons are memorised (pilot: ep2/7).
DEMO_CHECKPOINT_EPOCH = 2


@dataclass(frozen=True)
class DetectConfig:
    scorer: str = "vader"
    transforms: tuple[str, ...] = ("negation_prefix", "antonym_flip", "grammatical_negation",
                                   "question_negation", "label_flip")
    seed: int = 0
    measurement: str = "label_logprob"
    normalize: str = "grad_norm"
    max_candidates: int = 8
    batch_size: int = 16
    mining: dict = field(default_factory=dict)


def _sha(obj: object) -> str:
    # Its own JSON spelling (spaces, default=str), kept so that stored demo cache keys stay valid.
    return sha256_hex(json.dumps(obj, sort_keys=True, default=str).encode())


def train_sha(ws: Workspace) -> str:
    h = hashlib.sha256()
    for r in ws.conn.execute("SELECT uid, content_sha256 FROM examples WHERE role = 'train' ORDER BY uid"):
        h.update(f"{r[0]}:{r[1]}\n".encode())
    return h.hexdigest()


def mine(ws: Workspace, config: DetectConfig) -> None:
    from engine.triggers import mine_workspace

    key = _sha({"train": train_sha(ws), "params": config.mining})
    if ws.get_meta("trigger_mining_key") != key:
        mine_workspace(ws, **config.mining)
        ws.set_meta("trigger_mining_key", key)


def detect(
    ws: Workspace,
    model: Path | None = None,
    checkpoint: Path | None = None,
    config: DetectConfig | None = None,
    progress: ProgressFn = no_progress,
    token: CancelToken | None = None,
    uids: Sequence[str] | None = None,
    prefilter: Any = None,
) -> dict:
    """Run the whole detection pipeline; returns ``{"detectors": ..., "run_key": ..., "cached": bool}``.

    ``uids``: scan only these training examples (e.g. a trial sample, issue #7); the others stay
    unscored and the detectors mark them so. ``prefilter``: an ``engine.prefilter.PrefilterSettings``;
    the TF-IDF candidates are chosen once every query set (triggered ones included) is registered.
    The result then also holds ``"prefilter_id"``, the recorded selection.

    ``model``: the fine-tuned model under audit (trigger confirmation and prediction-based
    query sets use it). ``checkpoint``: score influence at this checkpoint instead (earlier
    checkpoints separate poisons better, see the pilot).
    """
    from engine.detect import run_detectors

    config = config or DetectConfig()
    with Stage(progress, "mine triggers", 1, token) as st:
        mine(ws, config)
        st.advance()
    if model is None:
        return {"detectors": run_detectors(ws, None, config.scorer, progress), "run_key": None, "cached": False}

    from engine.models import fingerprint_of

    model_fp = fingerprint_of(model)
    scan_model = checkpoint or model
    key = _sha({"train": train_sha(ws), "model": model_fp, "scan_model": fingerprint_of(scan_model),
                "config": asdict(config), "mining": ws.get_meta("trigger_mining_key"),
                "queries": _original_sets_sha(ws), "uids": None if uids is None else _sha(sorted(uids)),
                "prefilter": None if prefilter is None else prefilter.as_dict()})
    cached_run = ws.get_meta("detect_run_key")
    if ws.get_meta("detect_key") == key and cached_run and _has_detectors(ws):
        return {"detectors": None, "run_key": cached_run, "cached": True}

    from engine.influence import scan
    from engine.influence.scanner import ScanSettings
    from engine.models import load_model
    from engine.transforms import make_sentiment_guided_sets, make_transformed_sets
    from engine.triggers import confirm_candidates

    with Stage(progress, "query sets", 3, token) as st:
        loaded = load_model(model, device="cpu")
        make_transformed_sets(ws, config.transforms, config.seed, loaded)
        st.advance(message="transforms")
        make_sentiment_guided_sets(ws, loaded, config.scorer)
        st.advance(message="sentiment-guided")
        confirm_candidates(ws, loaded, max_candidates=config.max_candidates, seed=config.seed)
        st.advance(message="trigger confirmation")
    settings = ScanSettings(measurement=config.measurement, normalize=config.normalize, self_influence=True,
                            batch_size=config.batch_size, seed=config.seed)
    selection_id = None
    if prefilter is not None:  # issue #7: ranked against every query set registered above
        from engine.prefilter import choose

        uids, selection_id = choose(ws, prefilter, uids)
    run_key = scan(ws, scan_model, settings, progress, token, uids=uids)
    if selection_id is not None:
        from engine.prefilter import attach_run

        attach_run(ws, selection_id, run_key)
    results = run_detectors(ws, run_key, config.scorer, progress, fingerprint=loaded.fingerprint)
    with ws.transaction() as conn:
        ws.set_meta("detect_key", key, conn)
        ws.set_meta("detect_run_key", run_key, conn)
        ws.set_meta("model_path", str(Path(model).resolve()), conn)
        # the review app's compute screen re-runs this pipeline with the same model and checkpoint
        ws.set_meta("checkpoint_path", str(Path(scan_model).resolve()), conn)
    return {"detectors": results, "run_key": run_key, "cached": False, "prefilter_id": selection_id}


def _original_sets_sha(ws: Workspace) -> str:
    return _sha([list(r) for r in ws.conn.execute(
        "SELECT id, sha256 FROM query_sets WHERE variant = 'original' ORDER BY id")])


def _has_detectors(ws: Workspace) -> bool:
    return ws.conn.execute("SELECT COUNT(*) FROM detector_runs").fetchone()[0] > 0


# ---------------------------------------------------------------- the demo
def cache_dir() -> Path:
    if os.environ.get("POISON_TUI_CACHE"):
        return Path(os.environ["POISON_TUI_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "poison-tui"


@dataclass
class Demo:
    workspace: Path
    model: Path
    checkpoint: Path
    result: dict


def prepare_demo(
    sample_dir: Path = SAMPLE_DIR,
    out: Path | None = None,
    progress: ProgressFn = no_progress,
    token: CancelToken | None = None,
) -> Demo:
    """Train (or reuse) the demo model on ``sample_dir``, ingest, detect. All cached by content."""
    from engine.influence.scanner import training_rows
    from engine.ingest import ingest
    from engine.train import train_model

    sample_dir = Path(sample_dir)
    train_file = sample_dir / "train.jsonl"
    if not train_file.is_file():
        raise UserError(f"{sample_dir}: no train.jsonl; create it with 'poison-tui make-sample {sample_dir}'")
    out = Path(out) if out else cache_dir() / "demo"
    data_key = sha256_file(train_file)[:16]
    model_dir = out / f"model-{data_key}"
    ws_path = out / "demo.poison"
    # the demo owns its workspace: a regenerated sample replaces the old one (unchanged: no-op)
    ingest(ws_path, train_file, [sample_dir / "eval"], replace=True)
    ws = Workspace.open(ws_path)
    rows = training_rows(ws)
    # resume=True: returns at once when model_dir already holds this data's finished model
    train_model(rows, model_dir, resume=True, progress=progress, token=token)
    checkpoint = model_dir / f"checkpoint-epoch-{DEMO_CHECKPOINT_EPOCH}"
    if not checkpoint.is_dir():
        checkpoint = model_dir
    result = detect(ws, model_dir, checkpoint, progress=progress, token=token)
    return Demo(ws_path, model_dir, checkpoint, result)
