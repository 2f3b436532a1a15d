"""Single-answer grading by any chat model, in FastChat's "single-v1" format (rating 1-10)."""

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


def _chat(gen: Generator, prompt: str) -> str:
    tokenizer = gen.tokenizer
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}]
    if tokenizer is not None and tokenizer.chat_template:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        assert isinstance(text, str)  # tokenize=False gives the rendered text
        return text
    return f"{SYSTEM}\n\n{prompt}\n\n"


@hookimpl
def fedbench_judges() -> list[type[Judge]]:
    return [LLMJudge]
