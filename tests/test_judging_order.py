"""Multi-answer grading controls position bias: the answers' order rotates, and swap reports consistency."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from fedbench.harness.generation import GenerationSettings
from fedbench.harness.grading import Deferred, grade_together
from fedbench.harness.interfaces import Judge, Judgment, Question
from fedbench.harness.registry import default_registry
from fedbench.harness.scoring import EvalProgress
from fedbench.harness.store import Store
from fedbench.harness.subjects import Subject

VARIANTS = (("dpo", "original"), ("kto", "original"), ("kto", "redistributed"))


class OrderRecorder(Judge):
    """Scores an answer by its text (so every order agrees) and records the order it was shown."""

    name = "recorder"

    def __init__(self, swap: bool) -> None:
        self.swap = swap
        self.orders: list[list[str]] = []

    def judge(self, questions: Sequence[Question], answers: Sequence[str]) -> list[Judgment]:
        raise AssertionError("multi-answer grading must be used")

    def judge_together(self, question: Question, answers: Sequence[str]) -> tuple[list[float] | None, str]:
        self.orders.append([a.split(":")[0] for a in answers])
        return [float(a.split(":")[1]) for a in answers], "scores"


def _grade(tmp_path: Path, swap: bool, rotate: bool = True) -> tuple[OrderRecorder, list, Store]:
    store = Store(tmp_path / "results.sqlite")
    bench = default_registry().create("benchmark", "vicuna")
    questions = [Question(str(i), f"question {i}") for i in range(6)]
    judge = OrderRecorder(swap)
    deferred = []
    for rank, (method, layout) in enumerate(VARIANTS):
        subject = Subject(
            f"{method}-{layout}", "m", "chat", "float32", tmp_path / f"{method}-{layout}" / "adapter", method, layout, "fedavg"
        )
        answers = {q.id: f"{method}-{layout}:{rank + 3}" for q in questions}  # DPO 3, KTOO 4, KTOR 5 on every question
        deferred.append(
            Deferred(subject, bench, questions, answers, asdict(GenerationSettings()) | {"backend": "hf"}, ("recorder", judge))
        )
    rows = grade_together(deferred, {}, rotate, (), store, EvalProgress())
    return judge, rows, store


def test_each_variant_sits_in_each_position_equally_often_and_scores_map_back(tmp_path: Path) -> None:
    judge, rows, store = _grade(tmp_path, swap=False)
    assert len(judge.orders) == 6
    for position in range(3):
        assert Counter(order[position] for order in judge.orders) == {f"{m}-{lay}": 2 for m, lay in VARIANTS}
    assert {r.subject: r.score for r in rows} == {"dpo-original": 3.0, "kto-original": 4.0, "kto-redistributed": 5.0}
    assert all(r.judge == "recorder-together" for r in rows)
    store.close()


def test_swap_grades_the_reversed_order_too_and_reports_position_consistency(tmp_path: Path) -> None:
    judge, rows, store = _grade(tmp_path, swap=True)
    assert len(judge.orders) == 12
    assert judge.orders[1] == judge.orders[0][::-1]
    assert all("position-consistency 1.00 over 6 questions" in r.judge_setting for r in rows)
    assert {r.subject: r.score for r in rows}["kto-redistributed"] == 5.0
    store.close()


def test_fixed_order_grades_dpo_ktoo_ktor_in_that_order_on_every_question_under_its_own_name(tmp_path: Path) -> None:
    judge, rows, store = _grade(tmp_path, swap=False, rotate=False)
    assert judge.orders == [[f"{m}-{lay}" for m, lay in VARIANTS]] * 6
    assert {r.subject: r.score for r in rows} == {"dpo-original": 3.0, "kto-original": 4.0, "kto-redistributed": 5.0}
    assert {r.judge for r in rows} == {"recorder-together-fixed"} and "answer order fixed" in rows[0].judge_setting
    store.close()
