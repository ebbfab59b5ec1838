"""The sha256 helpers every module shares: bytes, files, canonical JSON and JSON-derived keys.

One place, so that a digest written by one module (audit log, manifest, cache key) is computed
the same way by every module that checks it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _clean(value: Any) -> Any:
    # NaN/inf have no JSON spelling; a missing score is null.
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def canonical_json(obj: Any) -> bytes:
    try:
        text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:  # NaN or inf somewhere: clean (rare, so not on the hot path)
        text = json.dumps(_clean(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")




def json_sha256(obj: Any) -> str:
    """sha256 of compact, key-sorted, ASCII-escaped JSON: the influence scanner's cache keys.

    Not ``canonical_json`` (which keeps UTF-8 unescaped): stored run keys must not change.
    """
    return sha256_hex(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode())
