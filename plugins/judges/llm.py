"""Grading by any chat model in FastChat's formats: one answer rated 1-10 ("single-v1"), two answers head to head
("pair-v2", verdict A, B or tie), and several answers rated together (single-v1's rating asked of each answer shown
beside the others)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from fedbench.api import (
    DEFAULT_MODEL,
    GenerationSettings,
    Generator,
    Judge,
    Judgment,
    Question,
    hookimpl,
    make_generator,
)

SYSTEM = "You are a helpful assistant."
TEMPLATE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response provided by an AI "
    "assistant to the user question displayed below. Your evaluation should consider factors such as the helpfulness, "
    "relevance, accuracy, depth, creativity, and level of detail of the response. Begin your evaluation by providing a "
    "short explanation. Be as objective as possible. After providing your explanation, you must rate the response on a "
    'scale of 1 to 10 by strictly following this format: "[[rating]]", for example: "Rating: [[5]]".\n\n'
    "[Question]\n{question}\n\n[The Start of Assistant's Answer]\n{answer}\n[The End of Assistant's Answer]"
)
"""FastChat's single-v1 judge prompt (fastchat/llm_judge/data/judge_prompts.jsonl)."""

PAIR_SYSTEM = (
    "Please act as an impartial judge and evaluate the quality of the responses provided by two AI assistants to the "
    "user question displayed below. You should choose the assistant that follows the user's instructions and answers the "
    "user's question better. Your evaluation should consider factors such as the helpfulness, relevance, accuracy, depth, "
    "creativity, and level of detail of their responses. Begin your evaluation by comparing the two responses and provide "
    "a short explanation. Avoid any position biases and ensure that the order in which the responses were presented does "
    "not influence your decision. Do not allow the length of the responses to influence your evaluation. Do not favor "
    "certain names of the assistants. Be as objective as possible. After providing your explanation, output your final "
    'verdict by strictly following this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and '
    '"[[C]]" for a tie.'
)
PAIR_TEMPLATE = (
    "[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n[The End of Assistant A's Answer]"
    "\n\n[The Start of Assistant B's Answer]\n{answer_b}\n[The End of Assistant B's Answer]"
)
"""FastChat's pair-v2 judge prompt (system and user parts)."""
_VERDICTS = {"A": "first", "B": "second", "C": "tie"}
_VERDICT = re.compile(r"\[\[([ABC])\]\]")
TOGETHER_TEMPLATE = (
    "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the responses provided by {n} AI "
    "assistants to the user question displayed below. Rate each response on a scale of 1 to 10 by strictly following "
    'this format: "Assistant 1: [[rating]]", one line per assistant.\n\n[Question]\n{question}\n\n{answers}'
)
"""single-v1's instruction for several answers at once (fedbench's; FastChat has no multi-answer rating prompt)."""

_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_FALLBACK = re.compile(r"\[(\d+\.?\d*)\]")


def parse_rating(reply: str) -> float | None:
    """The [[rating]] of a reply (falling back to [rating]); None when absent or outside 1-10."""
    match = _RATING.search(reply) or _RATING_FALLBACK.search(reply)
    if not match:
        return None
    value = float(match.group(1))
    return value if 1.0 <= value <= 10.0 else None


def expected_rating(logprobs: Sequence[float]) -> float:
    """sum_k k p(k) over ratings 1..10, with p renormalised over those ten continuations."""
    top = max(logprobs)
    weights = [math.exp(lp - top) for lp in logprobs]
    return sum(k * w for k, w in zip(range(1, 11), weights)) / sum(weights)


class LLMJudge(Judge):
    """Single-answer 1-10 rating by any chat model (FastChat single-v1); optional probability-weighted rating."""

    name = "llm"

    def __init__(self, model: str = DEFAULT_MODEL, expected: bool = True, backend: str = "hf", max_new_tokens: int = 256) -> None:
        self.model = model
        self.expected = expected
        self.backend = backend
        self.max_new_tokens = max_new_tokens
        self._generator: Generator | None = None

    @property
    def setting(self) -> str:
        return f"model={self.model}, {'expected rating' if self.expected else 'generated rating'}"

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            self._generator = make_generator(self.backend, self.model, GenerationSettings(max_new_tokens=self.max_new_tokens))
        return self._generator

    def prompts(self, questions: Sequence[Question], answers: Sequence[str]) -> list[str]:
        return [TEMPLATE.format(question=q.prompt, answer=a) for q, a in zip(questions, answers)]

    def judge(self, questions: Sequence[Question], answers: Sequence[str]) -> list[Judgment]:
        gen = self.generator
        prompts = self.prompts(questions, answers)
        if self.expected:
            # Small judges rarely finish the format; ask the rating directly and read its distribution.
            chats = [_chat(gen, p) + "Rating: [[" for p in prompts]
            logprobs = gen.continuation_logprobs(chats, [f"{k}]]" for k in range(1, 11)])
            return [
                Judgment(
                    q.id,
                    round(expected_rating(lp), 4),
                    "p(rating) = " + " ".join(f"{k}:{math.exp(x):.3g}" for k, x in zip(range(1, 11), lp)),
                )
                for q, lp in zip(questions, logprobs)
            ]
        replies = gen.generate([_chat(gen, p) for p in prompts], [0.0] * len(prompts), raw=True)
        return [Judgment(q.id, parse_rating(r), r) for q, r in zip(questions, replies)]

    def judge_together(self, question: Question, answers: Sequence[str]) -> tuple[list[float] | None, str]:
        """Each answer rated 1-10 while the judge sees all of them; with ``expected``, answer i's rating is the
        probability-weighted rating read after "Assistant i: [[" (each rating read on its own, not after the others')."""
        shown = "\n\n".join(
            f"[The Start of Assistant {i}'s Answer]\n{a}\n[The End of Assistant {i}'s Answer]" for i, a in enumerate(answers, 1)
        )
        chat = _chat(self.generator, TOGETHER_TEMPLATE.format(n=len(answers), question=question.prompt, answers=shown))
        if self.expected:
            heads = [chat + f"Assistant {i}: [[" for i in range(1, len(answers) + 1)]
            logprobs = self.generator.continuation_logprobs(heads, [f"{k}]]" for k in range(1, 11)])
            scores = [round(expected_rating(lp), 4) for lp in logprobs]
            return scores, "expected ratings: " + ", ".join(f"{s:.2f}" for s in scores)
        reply = self.generator.generate([chat], [0.0], raw=True)[0]
        found = [re.search(rf"Assistant {i}:\s*\[\[(\d+\.?\d*)\]\]", reply) for i in range(1, len(answers) + 1)]
        values = [float(m.group(1)) for m in found if m is not None]
        ok = len(values) == len(answers) and all(1.0 <= v <= 10.0 for v in values)
        return (values if ok else None), reply

    def judge_pair(self, question: Question, first: str, second: str) -> tuple[str | None, str]:
        """FastChat's pair-v2 verdict; with ``expected``, the likeliest of "A]]", "B]]" and "C]]" after "[[" (the three
        probabilities kept in the reply), else the generated reply's [[A]], [[B]] or [[C]]."""
        prompt = PAIR_TEMPLATE.format(question=question.prompt, answer_a=first, answer_b=second)
        chat = _chat(self.generator, prompt, PAIR_SYSTEM)
        if self.expected:
            logprobs = self.generator.continuation_logprobs([chat + "[["], ["A]]", "B]]", "C]]"])[0]
            best = max(range(3), key=logprobs.__getitem__)
            return _VERDICTS["ABC"[best]], "p(verdict) = " + " ".join(f"{v}:{math.exp(x):.3g}" for v, x in zip("ABC", logprobs))
        reply = self.generator.generate([chat], [0.0], raw=True)[0]
        found = _VERDICT.findall(reply)
        return (_VERDICTS[found[-1]] if found else None), reply


def _chat(gen: Generator, prompt: str, system: str = SYSTEM) -> str:
    tokenizer = gen.tokenizer
    messages = [{"role": "system", "content": system}, {"role": "user", "content": prompt}]
    if tokenizer is not None and tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert isinstance(text, str)  # tokenize=False gives the rendered text
        return text
    return f"{system}\n\n{prompt}\n\n"


@hookimpl
def fedbench_judges() -> list[type[Judge]]:
    return [LLMJudge]
