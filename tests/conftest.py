"""Shared fixtures: a tiny offline model and small preference files in the real formats."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The tiny test model gains nothing from threads, and two processes spinning two OpenMP threads
# each on a 2-core CI machine slowed steps down tens of times; one thread keeps the suite steady.
os.environ.setdefault("OMP_NUM_THREADS", "1")


RAY_TESTS = ("test_flower.py", "test_secure_aggregation.py")
"""Modules whose tests start Flower's Ray simulation or a local SuperLink: run one after another on one worker."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n 2 --dist loadgroup``, as ``make test`` runs) the Flower tests share one worker: two Ray
    clusters starting at once on one machine would compete for its session directory and ports."""
    for item in items:
        if item.path.name in RAY_TESTS:
            item.add_marker(pytest.mark.xdist_group("flower"))


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from fedbench.harness.testing import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def write_pairs(path: Path, n: int = 24, clients: int = 4) -> Path:
    """A small JSONL preference file with skewed client sizes."""
    sizes = [n // 2] + [max(1, (n - n // 2) // (clients - 1))] * (clients - 1)
    rows, i = [], 0
    for c, size in enumerate(sizes):
        for _ in range(size):
            rows.append(
                {
                    "id": f"p{i}",
                    "client_id": f"user{c}",
                    "prompt": f"What is {i} plus 1?",
                    "chosen": f"{i} plus 1 is {i + 1}.",
                    "rejected": "I don't know.",
                }
            )
            i += 1
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture()
def pairs_file(tmp_path: Path) -> Path:
    return write_pairs(tmp_path / "pairs.jsonl")
