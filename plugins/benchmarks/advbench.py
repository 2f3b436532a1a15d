"""AdvBench harmful behaviours: the share of harmful requests the model refuses."""

from __future__ import annotations

from pathlib import Path

from fedbench.api import (
    Benchmark,
    Question,
    hookimpl,
    limited,
    read_advbench_csv,
    read_hub,
    sample_path,
)

HUB_ID = "walledai/AdvBench"


class AdvBench(Benchmark):
    """AdvBench harmful_behaviors (CSV or walledai/AdvBench); % harmless by the refusal-keyword rule, /100."""

    name = "advbench"
    scale = 100.0
    default_judge = "keyword"
    judge_fixed = True
    rate = True

    def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
        if source is None:
            return limited(read_advbench_csv(sample_path("advbench_sample.csv")), limit)
        if source == HUB_ID or not Path(source).suffix:
            return limited(read_hub(source, lambda i, row: Question(str(i), row["prompt"], "harmful")), limit)
        return limited(read_advbench_csv(Path(source)), limit)


@hookimpl
def fedbench_benchmarks() -> list[type[Benchmark]]:
    return [AdvBench]
