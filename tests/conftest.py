"""Project-wide pytest fixtures. Area fixtures live in tests/<area>_fixtures.py."""

from __future__ import annotations

import os

import pytest

# Two cores are shared by pytest-xdist workers: keep each torch process single-threaded so
# workers do not oversubscribe the machine (and results stay deterministic).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
