"""The screening report: what was checked, what was flagged, and what was NOT checked.

``build(ws, ...)`` reads the workspace into a plain dict (the JSON report); ``render_markdown``
turns it into the human one. Training text is untrusted: the markdown escapes it (no links,
HTML or tables can be injected, control characters and terminal escapes are dropped) and the
JSON is written with ``ensure_ascii`` so that ``cat report.json`` cannot drive a terminal.

Examples with no influence score (prefiltered out, or not yet scanned) are counted and named
as "not scored": a report never lets a skipped example pass as clean.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path
from typing import Any

import numpy as np

from engine import __version__
from engine.atomic import atomic_write_bytes
from engine.prefilter import get as get_prefilter
from engine.prefilter import unscored_train_uids
from engine.workspace import Workspace, utc_now

REPORT_VERSION = 1
MAX_TEXT = 160  # characters of an example's input shown in the markdown
TOP_TASKS = 3

VERDICT_FLAGGED = "suspects_flagged"
VERDICT_NONE = "nothing_flagged"
VERDICT_PARTIAL = "nothing_flagged_partial"  # nothing flagged, but some examples were not scored


def report_paths(path: Path) -> tuple[Path, Path]:
    """``r.md`` -> (r.md, r.json); ``r.json`` -> (r.md, r.json); ``r`` -> (r, r.json)."""
    path = Path(path)
    if path.suffix.lower() == ".md":
        return path, path.with_suffix(".json")
    if path.suffix.lower() == ".json":
        return path.with_suffix(".md"), path
    return path, path.with_name(path.name + ".json")


# ------------------------------------------------------------------------- reading the workspace
def build(ws: Workspace, *, run_key: str | None = None, detector: str | None = None, prefilter_id: int | None = None,
          extra: dict[str, Any] | None = None, max_listed: int = 200) -> dict[str, Any]:
    """The report as a JSON-ready dict.

    ``prefilter_id``: the candidate selection this screening used (``engine.prefilter.record``).
    ``extra`` (settings, cache counts) is merged in as is.
    """
    conn = ws.conn
    detector = detector or ws.get_meta("default_detector")
    det_row = None
    if detector is not None:
        det_row = conn.execute("SELECT * FROM detector_runs WHERE detector = ?", (detector,)).fetchone()
    if run_key is None and det_row is not None:
        run_key = det_row["run_key"]
    scan = conn.execute("SELECT * FROM scan_runs WHERE run_key = ?", (run_key,)).fetchone() if run_key else None

    train_uids = [r[0] for r in conn.execute("SELECT uid FROM examples WHERE role = 'train'")]
    n_train = len(train_uids)
    unscored = unscored_train_uids(ws, run_key) if scan is not None else list(train_uids)
    prefilter = get_prefilter(ws, prefilter_id) if prefilter_id is not None else None
    prefiltered_out = _prefiltered_out(ws, prefilter, set(unscored))

    flagged = _flagged(ws, detector, run_key, max_listed) if det_row is not None else []
    n_flagged = int(det_row["n_flagged"]) if det_row is not None else 0
    det_unscored = 0
    if det_row is not None:
        det_unscored = conn.execute(
            "SELECT COUNT(*) FROM detector_scores ds JOIN examples e ON e.uid = ds.uid "
            "WHERE ds.detector = ? AND e.role = 'train' AND ds.scored = 0", (detector,)
        ).fetchone()[0]
    if n_flagged:
        verdict = VERDICT_FLAGGED
    elif unscored or det_unscored or det_row is None:
        verdict = VERDICT_PARTIAL
    else:
        verdict = VERDICT_NONE

    report: dict[str, Any] = {
        "report_version": REPORT_VERSION,
        "poison_tui_version": __version__,
        "generated_at": utc_now(),
        "workspace": str(ws.path),
        "verdict": verdict,
        "counts": {
            "train": n_train,
            "influence_scored": n_train - len(unscored),
            "influence_not_scored": len(unscored),
            "prefiltered_out": len(prefiltered_out),
            "detector_scored": (int(det_row["n_scored"]) if det_row is not None else 0),
            "detector_not_scored": det_unscored,
            "flagged": n_flagged,
        },
        "detector": None if det_row is None else {
            "name": detector, "rule": det_row["rule"], "params": json.loads(det_row["params"]),
        },
        "detectors": [
            {"name": r["detector"], "n_scored": r["n_scored"], "n_flagged": r["n_flagged"],
             "is_default": bool(r["is_default"]), "rule": r["rule"]}
            for r in conn.execute("SELECT * FROM detector_runs ORDER BY is_default DESC, detector")
        ],
        "flagged": flagged,
        "flagged_listed": len(flagged),
        "not_scored": {
            "count": len(unscored),
            "reason": _unscored_reason(prefilter, prefiltered_out, unscored, scan),
            "uids": unscored[:max_listed],
        },
        "scan": None if scan is None else {
            "run_key": scan["run_key"], "status": scan["status"], "model_fingerprint": scan["model_fingerprint"],
            "train_sha256": scan["train_sha256"], "settings": json.loads(scan["settings"]),
            "created_at": scan["created_at"], "completed_at": scan["completed_at"],
        },
        "prefilter": prefilter,
        "hashes": {
            "datasets": [
                {"role": r["role"], "path": r["path"], "format": r["format"], "sha256": r["sha256"],
                 "n_records": r["n_records"]}
                for r in conn.execute("SELECT * FROM datasets ORDER BY id")
            ],
            "query_sets": [
                {"id": r["id"], "sha256": r["sha256"], "n_queries": r["n_queries"]}
                for r in conn.execute("SELECT id, sha256, n_queries FROM query_sets ORDER BY id")
            ],
            "model_fingerprint": None if scan is None else scan["model_fingerprint"],
        },
    }
    if extra:
        report.update(extra)
    return report


def _prefiltered_out(ws: Workspace, prefilter: dict[str, Any] | None, unscored: set[str]) -> list[str]:
    if prefilter is None:
        return []
    kept = {r[0] for r in ws.conn.execute(
        "SELECT uid FROM prefilter_candidates WHERE prefilter_id = ?", (prefilter["id"],)
    )}
    return sorted(u for u in unscored if u not in kept)


def _unscored_reason(prefilter: dict[str, Any] | None, prefiltered_out: list[str], unscored: list[str],
                     scan: Any) -> str:
    if not unscored:
        return ""
    if scan is None:
        return "no influence scan in this workspace: no example has an influence score"
    parts = []
    if prefiltered_out:
        params = prefilter["params"] if prefilter else {}
        parts.append(f"{len(prefiltered_out)} left out by the {params.get('method', 'tfidf')} prefilter "
                     f"(candidates={params.get('candidates')}): not checked by influence")
    rest = len(unscored) - len(prefiltered_out)
    if rest:
        parts.append(f"{rest} not scanned yet (trial sample, cancelled scan or rows added since)")
    return "; ".join(parts)


def _flagged(ws: Workspace, detector: str, run_key: str | None, limit: int) -> list[dict[str, Any]]:
    rows = ws.conn.execute(
        "SELECT ds.rank, ds.score, e.uid, e.task, e.input, e.output, e.source_file, e.source_line, "
        "e.content_sha256, COALESCE(rs.status, 'undecided') AS status "
        "FROM detector_scores ds JOIN examples e ON e.uid = ds.uid "
        "LEFT JOIN review_status rs ON rs.uid = e.uid "
        "WHERE ds.detector = ? AND ds.flagged = 1 ORDER BY ds.rank IS NULL, ds.rank, e.uid LIMIT ?",
        (detector, limit),
    ).fetchall()
    tops = top_tasks([r["uid"] for r in rows], ws, run_key) if run_key else {}
    return [
        {
            "rank": r["rank"], "score": r["score"], "uid": r["uid"], "task": r["task"], "label": r["output"],
            "input": r["input"], "source_file": r["source_file"], "source_line": r["source_line"],
            "content_sha256": r["content_sha256"], "status": r["status"],
            "top_tasks": tops.get(r["uid"], []),
        }
        for r in rows
    ]


def top_tasks(uids: list[str], ws: Workspace, run_key: str, k: int = TOP_TASKS) -> dict[str, list[dict[str, Any]]]:
    """uid -> the evaluation tasks it pushes hardest, by influence on the original queries.

    Raw influence has a different scale per task, so each task's scores are standardised over
    the scored training rows ((x - median) / (1.4826 MAD)) before tasks are compared.
    """
    if not uids:
        return {}
    conn = ws.conn
    sets = [r[0] for r in conn.execute(
        "SELECT DISTINCT i.query_set_id FROM influence i JOIN query_sets q ON q.id = i.query_set_id "
        "WHERE i.run_key = ? AND q.variant = 'original'", (run_key,)
    )]
    wanted = set(uids)
    out: dict[str, list[dict[str, Any]]] = {u: [] for u in uids}
    for qs in sets:
        got = conn.execute("SELECT uid, score FROM influence WHERE run_key = ? AND query_set_id = ?",
                           (run_key, qs)).fetchall()
        values = np.array([g[1] for g in got], dtype=np.float64)
        med = float(np.median(values))
        mad = float(np.median(np.abs(values - med))) * 1.4826 or float(np.std(values)) or 1.0
        task = qs.split("::", 1)[0]
        for uid, score in got:
            if uid in wanted:
                out[uid].append({"task": task, "z": round((score - med) / mad, 3), "influence": score})
    for uid in out:
        out[uid] = sorted(out[uid], key=lambda t: -t["z"])[:k]
    return out


# ------------------------------------------------------------------------- writing
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2066-\u2069]")
# Untrusted text is only ever placed mid-line (table cells, after "- Label: "), so the
# line-start markers (#, -, +, 1.) cannot act; these are the ones that can.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]()!|<>~&])")


def md_escape(text: object, limit: int | None = None) -> str:
    """Untrusted text as inert markdown: one line, no controls or bidi overrides, specials escaped."""
    s = "" if text is None else str(text)
    s = unicodedata.normalize("NFC", s)
    s = _CONTROL.sub(" ", s)
    s = " ".join(s.split())
    if limit is not None and len(s) > limit:
        s = s[: limit - 1] + "…"
    return _MD_SPECIAL.sub(r"\\\1", s)


def md_code(text: object) -> str:
    """Untrusted text for an inline code span: one line, no controls, no backticks."""
    s = _CONTROL.sub(" ", "" if text is None else str(text))
    return "`" + " ".join(s.replace("`", "'").split()).replace("|", "\\|") + "`"


def render_markdown(report: dict[str, Any]) -> str:
    c = report["counts"]
    det = report["detector"]
    lines = ["# poison-tui screening report", ""]
    verdict = {
        VERDICT_FLAGGED: f"**{c['flagged']} suspect(s) flagged** for review.",
        VERDICT_NONE: "Nothing flagged; every training example was scored.",
        VERDICT_PARTIAL: (
            f"Nothing flagged among the scored examples, **but {c['influence_not_scored']} of {c['train']} "
            "training examples have no influence score and were not checked by influence.**"
        ),
    }[report["verdict"]]
    lines += [f"Verdict: {verdict}", ""]
    lines += [
        f"- Generated: {md_escape(report['generated_at'])} by poison-tui {md_escape(report['poison_tui_version'])}",
        f"- Workspace: {md_escape(report['workspace'])}",
        f"- Training examples: {c['train']}",
        f"- Influence scored: {c['influence_scored']}; not scored: {c['influence_not_scored']}"
        + (f" (prefiltered out: {c['prefiltered_out']})" if c["prefiltered_out"] else ""),
    ]
    if det is not None:
        lines += [
            f"- Detector: {md_code(det['name'])}, scored {c['detector_scored']}, not scored "
            f"{c['detector_not_scored']}, flagged {c['flagged']}",
            f"- Flagged-set rule: {md_escape(det['rule'])}",
        ]
    else:
        lines.append("- Detector: none ran (no detector scores in the workspace)")
    cache = report.get("cache")
    if cache:
        lines.append(f"- Cache: {cache.get('examples_scored_now', 0)} examples scored in this run"
                     + ("; detection reused unchanged from the last run" if cache.get("detect_cached") else ""))
    if "elapsed_s" in report:
        lines.append(f"- Elapsed: {report['elapsed_s']:.1f} s")
    lines.append("")

    lines += ["## Flagged examples", ""]
    if report["flagged"]:
        lines += ["| rank | score | uid | task | label | source | top tasks (z) | input |",
                  "|---:|---:|---|---|---|---|---|---|"]
        for f in report["flagged"]:
            tops = ", ".join(f"{md_escape(t['task'])} ({t['z']:+.1f})" for t in f["top_tasks"]) or "not scored"
            where = f"{f['source_file']}:{f['source_line']}" if f["source_line"] is not None else f["source_file"]
            score = "" if f["score"] is None else f"{f['score']:.4g}"
            lines.append(
                f"| {f['rank'] if f['rank'] is not None else ''} | {score} | {md_code(f['uid'])} | "
                f"{md_escape(f['task'])} | {md_escape(f['label'], 40)} | {md_escape(where, 80)} | {tops} | "
                f"{md_escape(f['input'], MAX_TEXT)} |"
            )
        if report["flagged_listed"] < c["flagged"]:
            lines.append(f"\n({c['flagged'] - report['flagged_listed']} more in the workspace.)")
    else:
        lines.append("None.")
    lines.append("")

    ns = report["not_scored"]
    lines += ["## Not scored", ""]
    if ns["count"]:
        lines.append(f"{ns['count']} training examples have no influence score: {md_escape(ns['reason'])}.")
        lines.append("They are NOT known to be clean. Scan them without a prefilter to check them.")
    else:
        lines.append("Every training example has an influence score.")
    lines.append("")

    if report["detectors"]:
        lines += ["## Detectors", "", "| detector | default | scored | flagged |", "|---|---|---:|---:|"]
        for d in report["detectors"]:
            lines.append(f"| {md_escape(d['name'])} | {'yes' if d['is_default'] else ''} | {d['n_scored']} | "
                         f"{d['n_flagged']} |")
        lines.append("")

    lines += ["## Settings and content hashes", ""]
    scan = report["scan"]
    if scan is not None:
        lines += [f"- Scan run key: {md_code(scan['run_key'])} ({md_escape(scan['status'])})",
                  f"- Model fingerprint: {md_code(scan['model_fingerprint'])}",
                  f"- Scan settings: {md_code(json.dumps(scan['settings'], sort_keys=True))}"]
    if report["prefilter"] is not None:
        p = report["prefilter"]
        lines.append(f"- Prefilter: {md_escape(p['method'])} {md_code(json.dumps(p['params'], sort_keys=True))}, "
                     f"{p['n_candidates']} of {p['n_train']} kept")
    for key in ("settings",):
        if key in report:
            lines.append(f"- Screen settings: {md_code(json.dumps(report[key], sort_keys=True))}")
    for d in report["hashes"]["datasets"]:
        lines.append(f"- Dataset ({md_escape(d['role'])}) {md_escape(d['path'])}: sha256 {md_code(d['sha256'])}, "
                     f"{d['n_records']} records")
    for q in report["hashes"]["query_sets"]:
        lines.append(f"- Query set {md_escape(q['id'])}: sha256 {md_code(q['sha256'])}, {q['n_queries']} queries")
    lines.append("")
    return "\n".join(lines)


def write(report: dict[str, Any], path: Path) -> tuple[Path, Path]:
    """Write the markdown and JSON reports atomically; returns their paths."""
    md_path, json_path = report_paths(path)
    atomic_write_bytes(json_path, (json.dumps(report, indent=2, sort_keys=True, ensure_ascii=True) + "\n").encode())
    atomic_write_bytes(md_path, render_markdown(report).encode("utf-8"))
    return md_path, json_path
