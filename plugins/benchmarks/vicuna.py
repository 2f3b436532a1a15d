"""Vicuna-80: single-turn questions across nine categories, judged 1-10."""

from __future__ import annotations

from pathlib import Path

from fedbench.api import (
    Benchmark,
    Question,
    hookimpl,
    limited,
    read_fastchat,
    sample_path,
)


class Vicuna(Benchmark):
    """Vicuna-80 (FastChat vicuna_bench/question.jsonl); judge score /10."""

    name = "vicuna"
    scale = 10.0
    default_judge = "llm"
    question_ids = range(1, 81)

    def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
        path = sample_path("vicuna_sample.jsonl") if source is None else Path(source)
        return limited(read_fastchat(path), limit)

    answer_tokens = 2048
    """The study's Vicuna answer length."""

    def temperature(self, question: Question) -> float:
        return 0.7  # the study's, with top-p 1.0


@hookimpl
def fedbench_benchmarks() -> list[type[Benchmark]]:
    return [Vicuna]
