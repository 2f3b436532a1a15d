"""The ``arith`` benchmark: arithmetic questions with one exact answer each, scored as % correct."""

from __future__ import annotations

import json
from importlib.resources import files
from pathlib import Path

from fedbench.api import Benchmark, FedbenchError, Question, hookimpl

FEDBENCH_API = 2
SAMPLE = "arith.jsonl"


class Arith(Benchmark):
    """Twelve arithmetic questions with exact answers; % answered correctly (exact judge), /100."""

    name = "arith"
    scale = 100.0
    default_judge = "exact"
    judge_fixed = True
    rate = True  # the exact judge scores 1 or 0: the score is the percentage correct

    def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
        """The shipped set (read through importlib.resources, so it works from a wheel or a zip) or a JSONL file.

        Each line: ``{"id", "question", "answer"}``; the answer becomes the question's reference.
        """
        if source is None:
            origin, text = SAMPLE, (files(__package__) / "data" / SAMPLE).read_text(encoding="utf-8")
        else:
            origin, text = source, Path(source).read_text(encoding="utf-8")
        out = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                out.append(Question(str(row["id"]), str(row["question"]), "arithmetic", str(row["answer"])))
            except (json.JSONDecodeError, KeyError, TypeError) as err:
                raise FedbenchError(
                    f"{origin}, row {number}: not an arith question ({type(err).__name__}: {err})",
                    'write one {"id", "question", "answer"} object per line',
                ) from err
        return out if limit is None else out[:limit]


@hookimpl
def fedbench_benchmarks() -> list[type[Benchmark]]:
    return [Arith]
