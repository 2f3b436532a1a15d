"""The ``exact`` judge: an answer is right when the expected answer appears in it as a whole token."""

from __future__ import annotations

import re
from collections.abc import Sequence

from fedbench.api import Judge, Judgment, Question, hookimpl

FEDBENCH_API = 2


def normalise(text: str) -> str:
    """Lower case, thousands separators dropped (1,000 -> 1000), whitespace collapsed, a trailing full stop removed."""
    text = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", text.lower())
    return " ".join(text.split()).rstrip(".")


class Exact(Judge):
    """Exact match: 1 if the normalised reference answer appears in the reply as a whole token, else 0."""

    name = "exact"

    def judge(self, questions: Sequence[Question], answers: Sequence[str]) -> list[Judgment]:
        """A question without a reference cannot be judged: its score is None (a failure, never averaged in).

        "Whole token" keeps 42 from matching 142, 420 or 4.2, which a plain substring test would accept.
        """
        out = []
        for q, answer in zip(questions, answers):
            if q.reference is None:
                out.append(Judgment(q.id, None, "no reference answer to match"))
                continue
            expected = normalise(q.reference)
            pattern = rf"(?<![\w.]){re.escape(expected)}(?!\w|[.,]\d)"
            hit = re.search(pattern, normalise(answer)) is not None
            out.append(Judgment(q.id, 1.0 if hit else 0.0, f"expected {expected!r}: {'found' if hit else 'not found'}"))
        return out


@hookimpl
def fedbench_judges() -> list[type[Judge]]:
    return [Exact]
