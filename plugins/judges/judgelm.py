"""JudgeLM (Zhu et al. 2023): a fine-tuned judge that scores several answers 1-10 on its first output line."""

from __future__ import annotations

import re
from collections.abc import Sequence

from fedbench.api import (
    GenerationSettings,
    Generator,
    Judge,
    Judgment,
    Question,
    hookimpl,
    make_generator,
)

SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
INSTRUCTION = (
    "We would like to request your feedback on the performance of two AI assistants in response to the user question "
    "displayed above.\nPlease rate the helpfulness, relevance, accuracy, level of details of their responses. Each "
    "assistant receives an overall score on a scale of 1 to 10, where a higher score indicates better overall "
    "performance.\nPlease first output a single line containing only two values indicating the scores for Assistant 1 "
    "and 2, respectively. The two scores are separated by a space. In the subsequent line, please provide a "
    "comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in which "
    "the responses were presented does not affect your judgment."
)
"""The [System] instruction JudgeLM was trained with (judgelm/llm_judge/common.py)."""

_NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}
_SCORE = re.compile(r"-?\d+(?:\.\d+)?")


def instruction_for(n: int) -> str:
    """JudgeLM's instruction for n answers: 'two' becomes the count and 'Assistant 1 and 2' lists all n."""
    if n == 2:
        return INSTRUCTION
    listed = ", ".join(str(i) for i in range(1, n)) + f" and {n}"
    return INSTRUCTION.replace("two", _NUMBER_WORDS[n]).replace("Assistant 1 and 2", f"Assistant {listed}")


def build_prompt(question: str, answers: Sequence[str], reference: str | None = None, prefill: str = "") -> str:
    """A raw JudgeLM prompt (no chat template) grading ``answers`` in order, ending with '### Response:'."""
    parts = [SYSTEM, "\n", f"[Question]\n{question}\n\n"]
    if reference is not None:
        parts.append(f"[Reference Answer]\n{reference}\n\n")
    for i, answer in enumerate(answers, start=1):
        parts.append(f"[The Start of Assistant {i}'s Answer]\n{answer}\n\n[The End of Assistant {i}'s Answer]\n\n")
    parts.append(f"[System]\n{instruction_for(len(answers))}\n\n### Response:{prefill}")
    return "".join(parts)


def parse_scores(reply: str, n: int) -> list[float] | None:
    """The n scores on the reply's first line, tolerating commas and extra spaces; None unless exactly n in 1-10."""
    first = reply.strip().split("\n", 1)[0] if reply.strip() else ""
    values = [float(x) for x in _SCORE.findall(first.replace(",", " "))]
    if len(values) != n or not all(0.0 <= v <= 10.0 for v in values):
        return None
    return values


class JudgeLM(Judge):
    """JudgeLM single-answer grading: the reference (or base answer) as Assistant 1, pre-scored 10; score /10."""

    name = "judgelm"

    def __init__(
        self,
        model: str = "BAAI/JudgeLM-13B-v1.0",
        backend: str = "auto",
        swap: bool = False,
        temperature: float = 0.2,
        max_new_tokens: int = 16,
        fallback_reference: str = "",
    ) -> None:
        self.model = model
        self.backend = backend
        self.swap = swap
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.fallback_reference = fallback_reference
        self._generator: Generator | None = None

    @property
    def setting(self) -> str:
        return f"model={self.model}, swap={self.swap}, temperature={self.temperature}"

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            settings = GenerationSettings(max_new_tokens=self.max_new_tokens, template="chat")
            self._generator = make_generator(self.backend, self.model, settings)
        return self._generator

    def judge(self, questions: Sequence[Question], answers: Sequence[str]) -> list[Judgment]:
        refs = [q.reference if q.reference is not None else self.fallback_reference for q in questions]
        forward = [build_prompt(q.prompt, [r, a], prefill="10") for q, r, a in zip(questions, refs, answers)]
        replies = self._ask(forward)
        scores = [None if (s := parse_scores("10" + r, 2)) is None else s[1] for r in replies]
        raws = replies
        if self.swap:
            backward = [build_prompt(q.prompt, [a, r]) for q, r, a in zip(questions, refs, answers)]
            swapped = self._ask(backward)
            second = [None if (s := parse_scores(r, 2)) is None else s[0] for r in swapped]
            scores = [None if a is None or b is None else (a + b) / 2 for a, b in zip(scores, second)]
            raws = [f"{a}\n--- swapped ---\n{b}" for a, b in zip(replies, swapped)]
        return [Judgment(q.id, s, raw) for q, s, raw in zip(questions, scores, raws)]

    def judge_together(self, question: Question, answers: Sequence[str]) -> tuple[list[float] | None, str]:
        """Multi-answer grading, as the study graded DPO, KTOO and KTOR answers to one question together."""
        reply = self._ask([build_prompt(question.prompt, answers, question.reference)])[0]
        return parse_scores(reply, len(answers)), reply

    def _ask(self, prompts: list[str]) -> list[str]:
        return self.generator.generate(prompts, [self.temperature] * len(prompts), raw=True)


@hookimpl
def fedbench_judges() -> list[type[Judge]]:
    return [JudgeLM]
