"""EK-FAC influence of training examples on evaluation query sets (issue #3).

Public interface: ``scan(ws, model_path, settings, progress, token, uids=None) -> run_key``,
``ScanSettings``, ``last_report()`` and ``top_queries(ws, run_key, uid)`` for drill-down.
Modules: ``hooks`` (tracked layers), ``losses`` (what is differentiated), ``passes`` (one pass
over examples), ``factors`` (EK-FAC), ``scoring`` (preconditioning and scores), ``scanner``
(workspace, cache, resume), ``distributed`` (torchrun), ``drilldown``, ``direct`` (in memory).
"""

from __future__ import annotations

from typing import Any


def scan(*args: Any, **kwargs: Any) -> str:
    from engine.influence.scanner import scan as _scan

    return _scan(*args, **kwargs)


def __getattr__(name: str) -> Any:
    # Lazy: importing the package must not pull in torch (the CLI imports it to register commands).
    if name in ("ScanSettings", "ScanReport"):
        from engine.influence import scanner

        return getattr(scanner, name)
    if name == "top_queries":
        from engine.influence.drilldown import top_queries

        return top_queries
    raise AttributeError(name)


def last_report() -> Any:
    """What the most recent ``scan`` in this process did (counts, cache hits)."""
    from engine.influence import scanner

    return scanner.LAST_REPORT
