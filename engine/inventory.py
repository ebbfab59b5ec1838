"""What a workspace holds: datasets, counts per task and label, query sets (for ``poison-tui info``)."""

from __future__ import annotations

import json
from typing import Any

from engine.workspace import Workspace


def summarize(ws: Workspace) -> dict[str, Any]:
    conn = ws.conn
    datasets = [
        {**{k: r[k] for k in ("id", "role", "path", "format", "sha256", "n_records", "ingested_at")},
         "options": json.loads(r["options"])}
        for r in conn.execute("SELECT * FROM datasets ORDER BY role DESC, id")
    ]
    tasks: dict[tuple[str, str], dict[str, Any]] = {}
    for role, task, label_space, output, n in conn.execute(
        "SELECT role, task, label_space, output, COUNT(*) FROM examples "
        "GROUP BY role, task, label_space IS NULL, CASE WHEN label_space IS NULL THEN NULL ELSE output END "
        "ORDER BY role DESC, task"
    ):
        entry = tasks.setdefault((role, task), {"role": role, "task": task, "n": 0, "labels": {},
                                                "label_space": None})
        entry["n"] += n
        if label_space is not None:
            entry["labels"][output] = entry["labels"].get(output, 0) + n
            entry["label_space"] = json.loads(label_space)
    query_sets = [dict(r) for r in conn.execute(
        "SELECT id, task, variant, sha256, n_queries FROM query_sets ORDER BY task, variant")]
    return {
        "workspace": str(ws.path),
        "schema_version": conn.execute("PRAGMA user_version").fetchone()[0],
        "datasets": datasets,
        "tasks": list(tasks.values()),
        "query_sets": query_sets,
    }
