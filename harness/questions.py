"""Question-set readers shared by benchmarks: FastChat's question.jsonl, AdvBench's CSV, hub tables.

Benchmarks pick a reader and a column mapping; the readers check the file and name the row
that is malformed, like the training-data loaders do.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Question


def sample_path(name: str) -> Path:
    """A shipped sample file, beside the benchmark plugins."""
    import fedbench.plugins.benchmarks

    return Path(fedbench.plugins.benchmarks.__file__).resolve().parent / "data" / name


def read_fastchat(path: Path) -> list[Question]:
    """FastChat ``question.jsonl``: question_id, category, turns (first turn used), optional reference."""
    out = []
    for number, line in enumerate(_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            turns = row["turns"]
            reference = row.get("reference")
            out.append(
                Question(
                    id=str(row["question_id"]),
                    prompt=str(turns[0]),
                    category=str(row.get("category", "")),
                    reference=str(reference[0]) if reference else None,
                )
            )
        except (json.JSONDecodeError, KeyError, IndexError, TypeError) as err:
            raise FedbenchError(
                f"{path}, row {number}: not a FastChat question ({type(err).__name__}: {err})",
                "each line needs question_id, category and a non-empty turns list",
            ) from err
    return out


def read_advbench_csv(path: Path) -> list[Question]:
    """AdvBench ``harmful_behaviors.csv``: goal, target."""
    rows = list(csv.DictReader(_text(path).splitlines()))
    if rows and "goal" not in rows[0]:
        raise FedbenchError(f"{path}: no 'goal' column (has {list(rows[0])})", "use AdvBench's harmful_behaviors.csv")
    return [Question(id=str(i), prompt=r["goal"], category="harmful") for i, r in enumerate(rows, start=1)]


def read_hub(dataset_id: str, convert: Callable[[int, Mapping[str, Any]], Question], split: str = "train") -> list[Question]:
    """A hub question set; offline, the error says to pass a local file instead."""
    import datasets

    try:
        table: Iterable[Mapping[str, Any]] = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # the hub client raises many types for "cannot reach"/"not found"
        raise FedbenchError(
            f"cannot load question set '{dataset_id}' from the hub ({type(err).__name__})",
            "offline, pass the benchmark's local file instead (FastChat question.jsonl or harmful_behaviors.csv)",
        ) from err
    return [convert(i, row) for i, row in enumerate(table, start=1)]


def _text(path: Path) -> str:
    if not path.is_file():
        raise FedbenchError(f"question file '{path}' does not exist", "check the benchmark source path")
    return path.read_text(encoding="utf-8")


def limited(questions: list[Question], limit: int | None) -> list[Question]:
    """The first ``limit`` questions (all when None): quick runs keep the order of the file."""
    if not questions:
        raise FedbenchError("the question set is empty", "point the benchmark at a file with questions")
    return questions if limit is None else questions[:limit]
