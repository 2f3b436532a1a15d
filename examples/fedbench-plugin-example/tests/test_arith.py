"""The arith benchmark and the exact judge, tested with fedbench.api's types only."""

from __future__ import annotations

from pathlib import Path

import pytest
from fedbench_plugin_example.arith import Arith, fedbench_benchmarks
from fedbench_plugin_example.exact import Exact, fedbench_judges

from fedbench.api import FedbenchError, Judgment, Question


def test_registered_through_the_hooks() -> None:
    assert fedbench_benchmarks() == [Arith] and fedbench_judges() == [Exact]
    assert Arith.default_judge == Exact.name and Arith.scale == 100.0


def test_ships_twelve_questions_with_answers() -> None:
    questions = Arith().questions()
    assert len(questions) == 12 and len({q.id for q in questions}) == 12
    assert all(q.reference for q in questions)
    assert [q.id for q in Arith().questions(limit=3)] == ["a1", "a2", "a3"]


def test_reads_a_question_file_and_names_a_bad_row(tmp_path: Path) -> None:
    good = tmp_path / "q.jsonl"
    good.write_text('{"id": 1, "question": "1+1?", "answer": "2"}\n')
    assert Arith().questions(str(good)) == [Question("1", "1+1?", "arithmetic", "2")]
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1, "question": "1+1?", "answer": "2"}\n{"id": 2}\n')
    with pytest.raises(FedbenchError, match="row 2"):
        Arith().questions(str(bad))


@pytest.mark.parametrize(
    ("reference", "reply", "score"),
    [
        ("42", "17 + 25 = 42.", 1.0),
        ("42", "The answer is 142", 0.0),
        ("42", "4.2 or 420", 0.0),
        ("1000", "That makes 1,000 in total", 1.0),
        ("-8", "7 - 15 = -8", 1.0),
        ("-8", "It is 8", 0.0),
        ("1.5", "Half of 3 is 1.5.", 1.0),
        ("1", "The remainder is 1.5", 0.0),
        ("Paris", "paris, of course", 1.0),
    ],
)
def test_exact_judge(reference: str, reply: str, score: float) -> None:
    [judgment] = Exact().judge([Question("q", "?", reference=reference)], [reply])
    assert judgment.score == score and judgment.raw


def test_no_reference_is_a_failure_not_a_zero() -> None:
    [judgment] = Exact().judge([Question("q", "?")], ["anything"])
    assert judgment.score is None


def test_score_is_percent_correct_and_ignores_failures() -> None:
    verdicts = [
        Judgment("a", 1.0, ""),
        Judgment("b", 0.0, ""),
        Judgment("c", 1.0, ""),
        Judgment("d", 1.0, ""),
        Judgment("e", None, ""),
    ]
    assert Arith().score(verdicts) == 75.0
    assert Arith().score([]) is None
