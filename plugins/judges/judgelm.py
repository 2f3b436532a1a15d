"""JudgeLM (Zhu et al. 2023): a fine-tuned judge that scores several answers 1-10 on its first output line."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

from fedbench.api import (
    FedbenchError,
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
_NUMBER = r"\d+(?:\.\d+)?"
_PLAIN = re.compile(_NUMBER)
_LABELLED = re.compile(rf"assistant\s*(\d+)(?:'s)?(?:\s+score)?(?:\s*:\s*|\s+)({_NUMBER})", re.IGNORECASE)
_LABEL_LINE = re.compile(rf"(?:{_LABELLED.pattern})(?:\s*[,;]?\s*(?:{_LABELLED.pattern}))*\s*[,;.]?", re.IGNORECASE)

MARKER = " [... truncated by fedbench]"
"""Appended to an answer the length guard cut, so the judge (and a reader of the prompt) sees it was cut."""
BYTES_PER_TOKEN = 3
"""The token estimate when the judge's generator has no tokenizer: one token per 3 UTF-8 bytes, rounded up."""


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
    """The scores of Assistants 1..n from a JudgeLM reply, in that order; None (a failure) unless exactly n are read.

    JudgeLM answers with the scores alone on its first line ("8 6"), then its explanation. Two forms are read:

    - plain: the first line (after leading blank space) holds exactly n numbers and nothing else, separated by
      spaces and/or commas ("8 6", "7, 9", "10 7.5"); the i-th number is Assistant i's score. Scores on later
      lines never count ("8\n6" is a failure: which line ends the scores cannot be told).
    - labelled: the first line starts with "Assistant k: s" (also "Assistant k s", "Assistant k's score: s"), and
      the scores may continue on the next lines as long as each line holds labelled scores only
      ("Assistant 1: 8 Assistant 2: 6", "Assistant 1: 8\nAssistant 2: 6"). Each score goes to its label's
      assistant, whatever order the labels come in; the labels must be exactly 1..n, each once, and a further
      labelled line right after them is an extra score. Labels are never read as scores.

    Anything else is a failure: words or other symbols on a plain first line, more or fewer than n scores, a
    score outside 0-10, a repeated or unknown label, an empty reply. A failure is never turned into a score.
    """
    lines = reply.strip().splitlines()
    if not lines or n < 1:
        return None
    if _LABEL_LINE.fullmatch(lines[0].strip()):
        return _labelled(lines, n)
    tokens = re.split(r"[,\s]+", lines[0].strip())
    if len(tokens) != n or not all(_PLAIN.fullmatch(t) for t in tokens):
        return None
    values = [float(t) for t in tokens]
    return values if all(0.0 <= v <= 10.0 for v in values) else None


_STUDY_NUMBER = re.compile(r"\d+[.]?\d*")


def parse_scores_study(reply: str, n: int) -> list[float] | None:
    """The KTO-vs-DPO study's own rule (its ``pref_evaluation.py``), kept so its published table can be recomputed.

    A reply that does not start with a number, or holds fewer than n numbers anywhere, is skipped (None);
    otherwise the first n numbers anywhere in the reply are the scores, in order, with no range check. It
    accepts replies :func:`parse_scores` rejects: "1\n...1, 1." scores 1/1/1, and numbers in the explanation
    ("Assistant 2's answer ...") fill in when the first line holds fewer than n.
    """
    if _STUDY_NUMBER.match(reply) is None:
        return None
    found = _STUDY_NUMBER.findall(reply)
    return [float(x) for x in found[:n]] if len(found) >= n else None


PARSE_RULES: dict[str, Callable[[str, int], list[float] | None]] = {"strict": parse_scores, "study": parse_scores_study}
"""How a JudgeLM reply becomes scores: ``strict`` (the default, :func:`parse_scores`) or the study's rule."""


def _labelled(lines: Sequence[str], n: int) -> list[float] | None:
    """Scores by label from the labelled lines at the top of the reply (blank lines between them allowed)."""
    pairs: list[tuple[int, float]] = []
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if not _LABEL_LINE.fullmatch(text):
            break
        if len(pairs) >= n:
            return None  # a labelled line after n scores: an extra score
        pairs += [(int(label), float(score)) for label, score in _LABELLED.findall(text)]
    by_label = dict(pairs)
    if len(pairs) != n or sorted(by_label) != list(range(1, n + 1)):
        return None
    values = [by_label[k] for k in range(1, n + 1)]
    return values if all(0.0 <= v <= 10.0 for v in values) else None


def estimate_tokens(text: str) -> int:
    """A token count without a tokenizer: UTF-8 bytes / :data:`BYTES_PER_TOKEN`, rounded up.

    English prose averages about 4 characters per LLaMA token, so this over-counts it and the guard cuts a
    little early rather than late. It is an estimate, not a bound: text the tokenizer splits into single
    bytes (rare scripts, emoji) is under-counted.
    """
    return -(-len(text.encode("utf-8")) // BYTES_PER_TOKEN)


def fit_answers(
    question: str,
    answers: Sequence[str],
    budget: int,
    count: Callable[[str], int],
    reference: str | None = None,
    prefill: str = "",
) -> tuple[list[str] | None, int]:
    """``answers`` cut so that ``build_prompt(question, answers, reference, prefill)`` counts at most ``budget``
    tokens by ``count``, and how many were cut; ``(None, 0)`` when not even the prompt without answer text fits.

    Every answer gets the same token budget (the largest that fits; an answer shorter than it is kept
    whole and leaves its room to the others), so no answer is favoured by being shown in full while another
    is cut. A cut answer keeps its beginning and ends with :data:`MARKER`. The question, the reference and
    the instruction are never cut. Token counts are not exactly additive over the prompt's pieces, so the
    whole prompt is counted again after cutting and the budget tightened until it fits.
    """
    if count(build_prompt(question, answers, reference, prefill)) <= budget:
        return list(answers), 0
    marker = count(MARKER)
    lengths = [count(a) for a in answers]
    room = budget - count(build_prompt(question, [""] * len(answers), reference, prefill))
    for _ in range(8):
        cap = _even_cap(lengths, room)
        if cap <= marker:
            return None, 0
        fitted = [a if size <= cap else _head(a, cap - marker, count) + MARKER for a, size in zip(answers, lengths)]
        over = count(build_prompt(question, fitted, reference, prefill)) - budget
        if over <= 0:
            return fitted, sum(size > cap for size in lengths)
        room -= over
    return None, 0


def _even_cap(lengths: Sequence[int], room: int) -> int:
    """The largest per-answer cap c with sum(min(length, c)) <= room."""
    low, high = 0, max(lengths, default=0)
    while low < high:
        mid = (low + high + 1) // 2
        if sum(min(size, mid) for size in lengths) <= room:
            low = mid
        else:
            high = mid - 1
    return low


def _head(text: str, tokens: int, count: Callable[[str], int]) -> str:
    """The longest beginning of ``text`` that counts at most ``tokens`` tokens."""
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if count(text[:mid]) <= tokens:
            low = mid
        else:
            high = mid - 1
    return text[:low]


class JudgeLM(Judge):
    """JudgeLM single-answer grading: the reference (or base answer) as Assistant 1, pre-scored 10; score /10.

    Every prompt goes through a length guard (:func:`fit_answers`): when it would not leave
    ``max_new_tokens`` (and one token for a BOS) free in JudgeLM's ``context_tokens`` (2048, its training
    length), every answer is cut to the same token budget and marked with :data:`MARKER`. Tokens are
    counted with the judge model's tokenizer when its generator has one, else estimated by
    :func:`estimate_tokens`. A judgment whose prompt was cut starts its raw text with a
    ``[fedbench: ...]`` line saying how many answers were cut; the setting reports the count over every
    prompt this judge built in this process (``truncated_answers``) and the prompts that could not fit
    even with the answers cut (``unfit_prompts``: not sent, stored as failures).
    """

    name = "judgelm"

    def __init__(
        self,
        model: str = "BAAI/JudgeLM-13B-v1.0",
        backend: str = "auto",
        swap: bool = False,
        temperature: float = 0.2,
        max_new_tokens: int = 16,
        fallback_reference: str = "",
        context_tokens: int = 2048,
        parse: str = "strict",
        expected: bool = False,
    ) -> None:
        if parse not in PARSE_RULES:
            raise FedbenchError(
                f"judgelm: unknown parse rule '{parse}'", f"use one of {', '.join(PARSE_RULES)} (judge_params parse = ...)"
            )
        if context_tokens <= max_new_tokens + 1:
            raise FedbenchError(
                f"judgelm: context_tokens={context_tokens} leaves no room for a prompt after max_new_tokens={max_new_tokens}",
                "set context_tokens to the judge model's context length (JudgeLM: 2048) and max_new_tokens well below it",
            )
        self.model = model
        self.backend = backend
        self.swap = swap
        self.temperature = temperature
        self.max_new_tokens = max_new_tokens
        self.fallback_reference = fallback_reference
        self.context_tokens = context_tokens
        self.parse = parse
        self.expected = expected
        self.truncated_answers = 0
        self.unfit_prompts = 0
        self._generator: Generator | None = None
        self._counter: tuple[Callable[[str], int], str] | None = None

    @property
    def setting(self) -> str:
        text = (
            f"model={self.model}, swap={self.swap}, temperature={self.temperature}, context_tokens={self.context_tokens}, "
            f"truncated_answers={self.truncated_answers}"
        )
        text += f", parse={self.parse}" if self.parse != "strict" else ""
        text += ", expected scores" if self.expected else ""
        return text + (f", unfit_prompts={self.unfit_prompts}" if self.unfit_prompts else "")

    @property
    def generator(self) -> Generator:
        if self._generator is None:
            settings = GenerationSettings(max_new_tokens=self.max_new_tokens, template="chat")
            self._generator = make_generator(self.backend, self.model, settings)
        return self._generator

    @property
    def counter(self) -> tuple[Callable[[str], int], str]:
        """How prompt tokens are counted: the generator's tokenizer ("tokenizer"), else :func:`estimate_tokens` ("estimate")."""
        if self._counter is None:
            tokenizer = self.generator.tokenizer
            if tokenizer is None:
                self._counter = (estimate_tokens, "estimate")
            else:
                self._counter = (lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"]), "tokenizer")
        return self._counter

    def judge(self, questions: Sequence[Question], answers: Sequence[str]) -> list[Judgment]:
        refs = [q.reference if q.reference is not None else self.fallback_reference for q in questions]
        forward = [self._prompt(q.prompt, [r, a], prefill="10") for q, r, a in zip(questions, refs, answers)]
        if self.expected:
            read = [(None, note) if p is None else self._expected(p + " ", 1) for p, note in forward]
            return [Judgment(q.id, None if s is None else s[0], raw) for q, (s, raw) in zip(questions, read)]
        replies = self._ask([p for p, _ in forward])
        scores = [
            None if p is None or (s := self.read_scores("10" + r, 2)) is None else s[1] for (p, _), r in zip(forward, replies)
        ]
        raws = [note + r for (_, note), r in zip(forward, replies)]
        if self.swap:
            backward = [self._prompt(q.prompt, [a, r]) for q, r, a in zip(questions, refs, answers)]
            swapped = self._ask([p for p, _ in backward])
            second = [
                None if p is None or (s := self.read_scores(r, 2)) is None else s[0] for (p, _), r in zip(backward, swapped)
            ]
            scores = [None if a is None or b is None else (a + b) / 2 for a, b in zip(scores, second)]
            raws = [f"{a}\n--- swapped ---\n{note}{b}" for a, (_, note), b in zip(raws, backward, swapped)]
        return [Judgment(q.id, s, raw) for q, s, raw in zip(questions, scores, raws)]

    def judge_together(self, question: Question, answers: Sequence[str]) -> tuple[list[float] | None, str]:
        """Multi-answer grading, as the study graded DPO, KTOO and KTOR answers to one question together.

        The scores come back in the order the answers were given (Assistant i is ``answers[i-1]``): the
        harness rotates that order from question to question and maps the scores back.
        """
        prompt, note = self._prompt(question.prompt, answers, question.reference)
        if prompt is None:
            return None, note
        if self.expected:
            scores, read = self._expected(prompt, len(answers))
            return scores, note + read
        reply = self._ask([prompt])[0]
        return self.read_scores(reply, len(answers)), note + reply

    def read_scores(self, reply: str, n: int) -> list[float] | None:
        """The scores in a JudgeLM reply by this judge's parse rule (``parse``: strict or the study's)."""
        return PARSE_RULES[self.parse](reply, n)

    def _prompt(
        self, question: str, answers: Sequence[str], reference: str | None = None, prefill: str = ""
    ) -> tuple[str | None, str]:
        """The prompt through the length guard (None when it cannot fit) and the note to put before the reply."""
        count, how = self.counter
        budget = self.context_tokens - self.max_new_tokens - 1
        fitted, cut = fit_answers(question, answers, budget, count, reference, prefill)
        if fitted is None:
            self.unfit_prompts += 1
            note = (
                f"[fedbench: not graded: the prompt does not fit context_tokens={self.context_tokens} "
                f"(max_new_tokens={self.max_new_tokens}) even with the answers cut; tokens counted by {how}]\n"
            )
            return None, note
        if not cut:
            return build_prompt(question, fitted, reference, prefill), ""
        self.truncated_answers += cut
        note = (
            f"[fedbench: {cut} of {len(answers)} answers truncated to fit context_tokens={self.context_tokens} "
            f"(max_new_tokens={self.max_new_tokens}); tokens counted by {how}]\n"
        )
        return build_prompt(question, fitted, reference, prefill), note

    def _expected(self, prompt: str, n: int) -> tuple[list[float], str]:
        """n scores read from the judge's probabilities instead of its sampled reply (``expected``): score i is the
        probability-weighted mean of 1-10 as the i-th number of the first line, after the likeliest earlier scores.
        Every answer then gets a score, however small the judge model (a 135M model never writes the format)."""
        scores: list[float] = []
        line = ""
        for i in range(n):
            end = "\n" if i == n - 1 else " "
            logprobs = self.generator.continuation_logprobs([prompt + line], [f"{k}{end}" for k in range(1, 11)])[0]
            top = max(logprobs)
            weights = [math.exp(lp - top) for lp in logprobs]
            scores.append(round(sum(k * w for k, w in zip(range(1, 11), weights)) / sum(weights), 4))
            line += f"{1 + max(range(10), key=logprobs.__getitem__)}{end}"
        return scores, "expected scores: " + " ".join(f"{x:.2f}" for x in scores)

    def _ask(self, prompts: Sequence[str | None]) -> list[str]:
        """The judge's replies; a prompt that is None (did not fit) is not sent and gets an empty reply."""
        todo = [p for p in prompts if p is not None]
        replies = iter(self.generator.generate(todo, [self.temperature] * len(todo), raw=True) if todo else [])
        return [next(replies) if p is not None else "" for p in prompts]


@hookimpl
def fedbench_judges() -> list[type[Judge]]:
    return [JudgeLM]
