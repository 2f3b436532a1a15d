"""JudgeLM multi-answer mode: scores read exactly or refused, and prompts cut evenly to fit JudgeLM's context."""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from fedbench.harness.errors import FedbenchError
from fedbench.harness.grading import grade_in_order
from fedbench.harness.interfaces import Question
from fedbench.plugins.judges.judgelm import MARKER, JudgeLM, build_prompt, estimate_tokens, fit_answers, parse_scores


def words(text: str) -> int:
    """A stand-in tokenizer's count: one token per word or punctuation mark."""
    return len(re.findall(r"\w+|[^\w\s]", text))


class WordTokenizer:
    def __call__(self, text: str, add_special_tokens: bool = True) -> dict[str, list[int]]:
        return {"input_ids": [0] * words(text)}


class FakeGenerator:
    """Records the prompts it is sent and answers each with the next scripted reply."""

    name = "fake"

    def __init__(self, replies: Sequence[str], tokenizer: Any = None) -> None:
        self.replies = list(replies)
        self.tokenizer = tokenizer
        self.prompts: list[str] = []

    def generate(self, prompts: Sequence[str], temperatures: Sequence[float], raw: bool = False) -> list[str]:
        assert raw
        self.prompts += prompts
        return [self.replies.pop(0) for _ in prompts]


def judge_with(replies: Sequence[str], tokenizer: Any = None, **params: Any) -> tuple[JudgeLM, FakeGenerator]:
    judge = JudgeLM(**params)
    judge._generator = FakeGenerator(replies, tokenizer)  # type: ignore[assignment]
    return judge, judge._generator  # type: ignore[return-value]


LONG = " ".join(f"word{i}" for i in range(3000))
SHORT = "Paris is the capital of France."


@pytest.mark.parametrize(
    ("reply", "n", "expected"),
    [
        # labelled scores go to their labels' assistants, whatever order and layout the labels come in
        ("Assistant 1: 8 Assistant 2: 6", 2, [8.0, 6.0]),
        ("Assistant 1: 8\nAssistant 2: 6\nAssistant 1 explains more.", 2, [8.0, 6.0]),
        ("Assistant 2: 6; Assistant 1: 8", 2, [8.0, 6.0]),
        ("Assistant 3: 2\nAssistant 1: 9\n\nAssistant 2: 4", 3, [9.0, 4.0, 2.0]),
        ("Assistant 1's score: 7.5, Assistant 2's score: 10", 2, [7.5, 10.0]),
        # labels that do not name 1..n exactly once are refused, never read as numbers
        ("Assistant 1: 8\nAssistant 1: 6", 2, None),
        ("Assistant 1: 8 Assistant 3: 6", 2, None),
        ("Assistant 1: 8\nThe second one is worse: 6", 2, None),
        ("Assistant 1: 8 and Assistant 2: 6", 2, None),
        ("Assistant 18 Assistant 26", 2, None),
        ("Assistant 1: 8 6", 2, None),
        # extra numbers, missing scores
        ("8 6 7\nwhy", 2, None),
        ("Assistant 1: 8\nAssistant 2: 6\nAssistant 3: 5", 2, None),
        ("8\nAssistant 1 is better.", 2, None),
        ("Assistant 1: 8\nAssistant 2 is worse.", 2, None),
        ("9 8\nwhy", 3, None),
        # out of range, not numbers, empty
        ("11 6", 2, None),
        ("-1 6", 2, None),
        ("Assistant 1: 8 Assistant 2: 12", 2, None),
        ("Scores: 8 6", 2, None),
        ("8/10 6/10", 2, None),
        ("", 2, None),
        ("   \n  ", 2, None),
        # JudgeLM's own format, with tolerable spacing and commas
        ("  9 8 3\nexplanation 10 10", 3, [9.0, 8.0, 3.0]),
        ("0, 10", 2, [0.0, 10.0]),
    ],
)
def test_parse_reads_exactly_n_scores_or_refuses(reply: str, n: int, expected: list[float] | None) -> None:
    assert parse_scores(reply, n) == expected


def test_short_answers_are_sent_as_they_are() -> None:
    judge, gen = judge_with(["8 6\nfine"], WordTokenizer())
    question = Question("q", "What is the capital of France?")
    scores, raw = judge.judge_together(question, [SHORT, "Lyon."])
    assert scores == [8.0, 6.0] and raw == "8 6\nfine"
    assert gen.prompts == [build_prompt(question.prompt, [SHORT, "Lyon."])]
    assert "truncated_answers=0" in judge.setting and "context_tokens=2048" in judge.setting


def test_overlong_answers_are_cut_evenly_to_fit_with_a_visible_marker() -> None:
    judge, gen = judge_with(["Assistant 1: 3\nAssistant 2: 9\nAssistant 3: 5\nwhy"], WordTokenizer(), context_tokens=1024)
    question = Question("q", "Explain everything.")
    scores, raw = judge.judge_together(question, [LONG, SHORT, LONG[:5000]])
    assert scores == [3.0, 9.0, 5.0]
    (prompt,) = gen.prompts
    assert words(build_prompt(question.prompt, [LONG, SHORT, LONG[:5000]])) > 1024
    assert words(prompt) <= 1024 - judge.max_new_tokens - 1
    first, second, third = (
        prompt.split(f"[The Start of Assistant {i}'s Answer]\n")[1].split("\n\n[The End")[0] for i in (1, 2, 3)
    )
    assert first.endswith(MARKER) and third.endswith(MARKER) and second == SHORT
    assert LONG.startswith(first.removesuffix(MARKER)) and LONG.startswith(third.removesuffix(MARKER))
    assert abs(words(first) - words(third)) <= 1  # the same budget for each cut answer
    assert raw.startswith("[fedbench: 2 of 3 answers truncated to fit context_tokens=1024") and "counted by tokenizer" in raw
    assert raw.endswith("Assistant 1: 3\nAssistant 2: 9\nAssistant 3: 5\nwhy")
    assert "truncated_answers=2" in judge.setting


def test_without_a_tokenizer_the_guard_estimates_tokens_from_bytes() -> None:
    judge, gen = judge_with(["7 7"], tokenizer=None)
    scores, raw = judge.judge_together(Question("q", "Q?"), [LONG, LONG])
    assert scores == [7.0, 7.0]
    assert estimate_tokens(gen.prompts[0]) <= 2048 - 16 - 1
    assert gen.prompts[0].count(MARKER) == 2 and "counted by estimate" in raw
    assert estimate_tokens("abcdef") == 2 and estimate_tokens("abcdefg") == 3 and estimate_tokens("é") == 1


def test_a_prompt_that_cannot_fit_is_a_failure_not_sent() -> None:
    judge, gen = judge_with([], WordTokenizer(), context_tokens=300)
    scores, raw = judge.judge_together(Question("q", LONG), [SHORT, SHORT])
    assert scores is None and gen.prompts == []
    assert raw.startswith("[fedbench: not graded") and "unfit_prompts=1" in judge.setting
    assert fit_answers(LONG, [SHORT, SHORT], 300, words) == (None, 0)


def test_single_answer_mode_fits_the_reference_and_the_answer_too() -> None:
    judge, gen = judge_with([" 7\nok", "garbage"], WordTokenizer(), context_tokens=600)
    questions = [Question("1", "Q?", reference=LONG), Question("2", "Q?", reference="R")]
    first, second = judge.judge(questions, [LONG, "A"])
    assert first.score == 7.0 and first.raw.startswith("[fedbench: 2 of 2 answers truncated")
    assert second.score is None and second.raw == "garbage"
    assert words(gen.prompts[0]) <= 600 - 16 - 1 and gen.prompts[0].endswith("### Response:10")


def test_scores_map_back_through_the_harness_rotation() -> None:
    """The harness shows the answers rotated; labelled or plain, each score lands on the answer shown at its position."""
    items = [SimpleNamespace(answers={"q": f"answer {i}"}, subject=SimpleNamespace(label=f"v{i}")) for i in range(3)]
    question = Question("q", "Q?")
    for reply in ("3 5 7", "Assistant 3: 7\nAssistant 1: 3\nAssistant 2: 5"):
        judge, gen = judge_with([reply], WordTokenizer())
        by_item, raw = grade_in_order(judge, question, items, [2, 0, 1])  # type: ignore[arg-type]
        assert by_item == {2: 3.0, 0: 5.0, 1: 7.0}
        assert "answer 2" in gen.prompts[0].split("[The Start of Assistant 1's Answer]\n")[1][:10]
        assert raw.startswith("[answer order: v2, v0, v1]")


def test_context_must_leave_room_for_a_prompt() -> None:
    with pytest.raises(FedbenchError, match="context_tokens"):
        JudgeLM(context_tokens=16, max_new_tokens=16)


class ScoreOdds(FakeGenerator):
    """Answers continuation_logprobs: the first score is 8 or 9 with equal odds, every later one surely 3."""

    def continuation_logprobs(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[list[float]]:
        self.prompts += prompts
        first = prompts[0].endswith("### Response:") or prompts[0].endswith("### Response:10 ")
        return [[0.0 if (k in (8, 9) if first else k == 3) else -1e9 for k in range(1, 11)] for _ in prompts]


def test_expected_scores_read_each_number_after_the_likeliest_earlier_ones() -> None:
    judge = JudgeLM(expected=True)
    gen = ScoreOdds([], WordTokenizer())
    judge._generator = gen  # type: ignore[assignment]
    scores, raw = judge.judge_together(Question("q", "Q?"), ["a", "b", "c"])
    assert scores == [8.5, 3.0, 3.0] and raw == "expected scores: 8.50 3.00 3.00"
    assert gen.prompts[1].endswith("### Response:8 ") and gen.prompts[2].endswith("### Response:8 3 ")
    (alone,) = judge.judge([Question("q", "Q?", reference="R")], ["a"])
    assert alone.score == 8.5 and gen.prompts[-1].endswith("### Response:10 "), "after the reference's prefilled 10"
    assert "expected scores" in judge.setting
