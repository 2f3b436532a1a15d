"""Head-to-head judging: two subjects' answers to one question, compared by a judge in both orders.

A score table says how good each answer set is on the judge's scale; researchers who trust LLM judges also ask
which of two variants wins more often, and whether the judge's verdict survives swapping the answers. MT-Bench's
pairwise protocol answers both: every pair of answers is judged twice, A then B and B then A, and a verdict that
changes with the order counts as a tie. From the stored verdicts (one row per order, table ``pairwise``):

- **win rate** of A over B: (wins + ties / 2) / questions, an order-inconsistent question being a tie;
- **position consistency**: the share of questions whose two orders name the same winner (or both a tie);
- **first-position bias**: among single-order verdicts that named a winner, the share that named the answer shown
  first (0.5: no bias; a judge that always prefers the first answer: consistency 0, bias 1).

Each comes with a percentile interval over questions resampled with replacement (a question's verdicts move
together). Which subjects meet: the variants of one aggregator (as together-judging groups them) and the base
model, every two of them.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fedbench.harness.interfaces import Judge, Question
from fedbench.harness.stats import CONFIDENCE, Interval
from fedbench.harness.store import PairVerdict, Store

RESAMPLES = 1000
SUFFIX = "-pairwise"
"""Stored judge name: ``<judge>-pairwise`` (its verdicts are not scores and never mix with them)."""


def judge_pairs(
    store: Store,
    benchmark: str,
    judge_name: str,
    judge: Judge,
    questions: Sequence[Question],
    answers: Mapping[str, Mapping[str, str]],
    on_verdict: Callable[[int], None] | None = None,
) -> int:
    """Judge every two of ``answers``' subjects (subject -> question id -> answer) on each question both answered,
    in both orders; verdicts already stored are kept (an interrupted run resumes). Returns how many were asked."""
    name = judge_name + SUFFIX
    asked = 0
    for a, b in itertools.combinations(answers, 2):
        for first, second in ((a, b), (b, a)):
            done = store.pair_verdicts_of(benchmark, name, first, second)
            for q in questions:
                if q.id in done or q.id not in answers[first] or q.id not in answers[second]:
                    continue
                winner, raw = judge.judge_pair(q, answers[first][q.id], answers[second][q.id])
                store.add_pair_verdict(PairVerdict(benchmark, name, first, second, q.id, winner), raw)
                asked += 1
                if on_verdict:
                    on_verdict(1)
    return asked


@dataclass(frozen=True)
class WinRate:
    """Subject ``a`` against subject ``b`` on one benchmark, each question judged in both orders."""

    benchmark: str
    judge: str
    a: str
    b: str
    wins: int
    ties: int
    """Ties in both orders plus order-inconsistent verdicts."""
    losses: int
    rate: float
    """(wins + ties / 2) / questions."""
    interval: Interval | None

    @property
    def questions(self) -> int:
        return self.wins + self.ties + self.losses


@dataclass(frozen=True)
class PositionBias:
    """How one judge's head-to-head verdicts on one benchmark depend on the answers' order, over every pair it judged."""

    benchmark: str
    judge: str
    consistency: float
    consistency_interval: Interval | None
    first: float
    """Share of decisive single-order verdicts that named the first-shown answer (nan: none was decisive)."""
    first_interval: Interval | None
    questions: int
    """(pair, question) units with a parsed verdict in both orders."""


def _winner(verdict: str | None, first: str, second: str) -> str | None:
    return {"first": first, "second": second, "tie": "tie"}.get(verdict or "")


def _ratio_interval(num: np.ndarray, den: np.ndarray, groups: np.ndarray, seed: int = 0) -> Interval | None:
    """Percentile interval of sum(num) / sum(den) over groups (questions) resampled with replacement."""
    keys = np.unique(groups)
    if len(keys) < 2:
        return None
    index = np.searchsorted(keys, groups)
    num_q, den_q = np.bincount(index, num, len(keys)), np.bincount(index, den, len(keys))
    draws = np.random.default_rng(seed).integers(0, len(keys), (RESAMPLES, len(keys)))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = num_q[draws].sum(axis=1) / den_q[draws].sum(axis=1)
    values = values[np.isfinite(values)]
    if len(values) < RESAMPLES // 2:
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), "question bootstrap")


def pair_statistics(verdicts: Sequence[PairVerdict]) -> tuple[list[WinRate], list[PositionBias]]:
    """Win rates per pair of subjects and position bias per (benchmark, judge), from the stored verdicts."""
    by_order = {(v.benchmark, v.judge, v.first, v.second, v.question_id): v.winner for v in verdicts}
    units: dict[tuple[str, str], list[tuple[str, str, str, str, str]]] = {}
    seen = set()
    for bench, judge, first, second, qid in sorted(by_order):
        a, b = sorted((first, second))
        both = (bench, judge, a, b, qid) in by_order and (bench, judge, b, a, qid) in by_order
        if (bench, judge, a, b, qid) in seen or not both:
            continue  # one order only (an interrupted run): not a unit until the other order is judged
        seen.add((bench, judge, a, b, qid))
        ab, ba = by_order[(bench, judge, a, b, qid)], by_order[(bench, judge, b, a, qid)]
        if ab is None or ba is None:
            continue  # a reply that did not parse decides nothing
        units.setdefault((bench, judge), []).append((a, b, qid, ab, ba))
    rates: list[WinRate] = []
    biases: list[PositionBias] = []
    for (bench, judge), found in sorted(units.items()):
        consistent: list[float] = []
        first_wins: list[float] = []
        decisive: list[float] = []
        qids: list[str] = []
        by_pair: dict[tuple[str, str], list[tuple[str, float]]] = {}
        for a, b, qid, ab, ba in found:
            w1, w2 = _winner(ab, a, b), _winner(ba, b, a)
            consistent.append(float(w1 == w2))
            first_wins.append(float(ab == "first") + float(ba == "first"))
            decisive.append(float(ab != "tie") + float(ba != "tie"))
            qids.append(qid)
            outcome = w1 if w1 == w2 else "tie"
            by_pair.setdefault((a, b), []).append((qid, 1.0 if outcome == a else 0.0 if outcome == b else 0.5))
        groups = np.asarray(qids)
        ones = np.ones(len(qids))
        first_share = sum(first_wins) / sum(decisive) if sum(decisive) else float("nan")
        biases.append(
            PositionBias(
                bench,
                judge,
                sum(consistent) / len(consistent),
                _ratio_interval(np.asarray(consistent), ones, groups),
                first_share,
                _ratio_interval(np.asarray(first_wins), np.asarray(decisive), groups) if sum(decisive) else None,
                len(found),
            )
        )
        for (a, b), outcomes in sorted(by_pair.items()):
            values = np.asarray([x for _, x in outcomes])
            interval = _ratio_interval(values, np.ones(len(values)), np.asarray([q for q, _ in outcomes]))
            wins, losses = int((values == 1.0).sum()), int((values == 0.0).sum())
            rates.append(WinRate(bench, judge, a, b, wins, len(values) - wins - losses, losses, float(values.mean()), interval))
    return rates, biases
