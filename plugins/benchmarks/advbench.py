"""AdvBench harmful behaviours: the share of harmful requests the model refuses.

The score is defined by a refusal-keyword rule (an answer containing a refusal phrase counts as
harmless), so a run's ``--judge`` never replaces it. The benchmark parameter ``keywords`` picks the list:

- ``"study"`` (default): the ``keyword`` judge's list, the GCG refusal list plus the study's additions, with
  the study's missing-comma bug fixed ("No," and "I'm not able to" are two phrases).
- ``"study-exact"``: the study code's list exactly as it ran, bug included, on purpose, for reproducing its
  numbers. In the study's ``evaluation/open_ended/gen_judge_advbench.py`` (rui-ye/OpenFedLLM, the code of
  FedLLM-Bench) a comma is missing after ``"No,"``, so Python's implicit string concatenation glues it to the
  next phrase: the list holds ``"No,I'm not able to"`` instead of ``"No,"`` and ``"I'm not able to"``. An
  answer that says only "I'm not able to ..." (or starts "No, ...") is then not counted as a refusal. Graded
  by the ``keyword-study-exact`` judge (plugins/judges/keyword.py; the study's rule: case-insensitive substring match), so its
  judgments and scores are stored apart from the default list's.

Set it in the profile: ``[eval] benchmark_params = { advbench = { keywords = "study-exact" } }``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from fedbench.api import (
    Benchmark,
    FedbenchError,
    Question,
    hookimpl,
    limited,
    read_advbench_csv,
    read_hub,
    sample_path,
)

HUB_ID = "walledai/AdvBench"

KEYWORD_CHOICES = {"study": "keyword", "study-exact": "keyword-study-exact"}
"""Each ``keywords`` value and the judge that grades with its list."""


class AdvBench(Benchmark):
    """AdvBench harmful_behaviors (CSV or walledai/AdvBench); % harmless by the refusal-keyword rule, /100.

    ``keywords = "study-exact"`` reproduces the study code's keyword list with its missing-comma bug.
    """

    name = "advbench"
    scale = 100.0
    default_judge = "keyword"
    judge_fixed = True
    rate = True

    answer_tokens = 1024
    """The study's AdvBench answer length."""

    def __init__(self, keywords: str = "study", trailing_period: bool = True) -> None:
        if keywords not in KEYWORD_CHOICES:
            raise FedbenchError(
                f"advbench: unknown keywords {keywords!r}",
                f"choose one of {', '.join(repr(k) for k in KEYWORD_CHOICES)} "
                "('study-exact' keeps the study code's missing-comma bug on purpose)",
            )
        self.keywords = keywords
        self.trailing_period = trailing_period
        # per instance: the keyword list decides which judge grades this benchmark
        self.default_judge = KEYWORD_CHOICES[keywords]  # type: ignore[misc]

    def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
        if source is None:
            found = read_advbench_csv(sample_path("advbench_sample.csv"))
        elif source == HUB_ID or not Path(source).suffix:
            found = read_hub(source, lambda i, row: Question(str(i), row["prompt"], "harmful"))
        else:
            found = read_advbench_csv(Path(source))
        if self.trailing_period:  # the study's answer script asks each goal with a "." appended
            found = [
                q if q.prompt.rstrip().endswith((".", "?", "!")) else replace(q, prompt=q.prompt.rstrip() + ".") for q in found
            ]
        return limited(found, limit)

    def temperature(self, question: Question) -> float:
        return 0.7  # the study's, with top-p 1.0


@hookimpl
def fedbench_benchmarks() -> list[type[Benchmark]]:
    return [AdvBench]
