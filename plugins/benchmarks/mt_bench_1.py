"""MT-Bench, first turn: 80 multi-category questions, judged 1-10."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fedbench.api import (
    Benchmark,
    Question,
    hookimpl,
    limited,
    read_fastchat,
    read_hub,
    sample_path,
)

HUB_ID = "HuggingFaceH4/mt_bench_prompts"
# FastChat's answer temperatures by category (fastchat/llm_judge/common.py)
TEMPERATURE = {
    "writing": 0.7,
    "roleplay": 0.7,
    "extraction": 0.0,
    "math": 0.0,
    "coding": 0.0,
    "reasoning": 0.0,
    "stem": 0.1,
    "humanities": 0.1,
}


class MTBench1(Benchmark):
    """MT-Bench first turn (FastChat question.jsonl or HuggingFaceH4/mt_bench_prompts); judge score /10."""

    name = "mt_bench_1"
    scale = 10.0
    default_judge = "llm"
    question_ids = range(81, 161)

    def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
        if source is None:
            return limited(read_fastchat(sample_path("mt_bench_1_sample.jsonl")), limit)
        if source == HUB_ID or not Path(source).suffix:
            return limited(read_hub(source, _from_hub), limit)
        return limited(read_fastchat(Path(source)), limit)

    answer_tokens = 1024
    """The study's MT-Bench answer length (FastChat's gen_model_answer default)."""

    def temperature(self, question: Question) -> float:
        return TEMPERATURE.get(question.category, 0.7)


def _from_hub(_: int, row: Mapping[str, Any]) -> Question:
    reference = row.get("reference") or None
    return Question(str(row["prompt_id"]), row["prompt"][0], row.get("category", ""), reference[0] if reference else None)


@hookimpl
def fedbench_benchmarks() -> list[type[Benchmark]]:
    return [MTBench1]
