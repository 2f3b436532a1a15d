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
