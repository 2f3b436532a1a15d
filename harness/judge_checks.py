"""Checks on the judge: how much a score depends on the answers it was judged beside, how two judges agree, and
how much of a ranking is answer length.

An LLM judge's score is not a property of an answer alone. These checks read the store only (no judging):

- **context shift**: the same answers judged in two contexts (a judge name and its ``@context`` variants, e.g.
  an imported file that judged FedAvg's answers beside the base model): mean per-question shift between the
  contexts with a paired interval and sign-flip p-value (the study: FedAvg KTOO 8.14 beside DPO and KTOR, 7.75
  beside the base model and DPO).
- **agreement**: two judges of the same answers: Spearman's rho over the answers' scores and Cohen's kappa over
  the pairwise preferences they imply (which of two subjects' answers to a question scores higher, or a tie),
  each with a bootstrap interval over questions ("Judging the Judges" recommends kappa against a second judge).
- **length control**: AlpacaEval 2's idea, as a linear model: score = subject effect + slope x (answer length -
  the base model's answer length to the same question), fitted over all subjects of a benchmark and judge; the
  subject effect is its length-controlled score, the score it would get at the base model's length. Lengths
  are counted in words of the stored answers (imported answers carry no token counts). A flag marks the groups
  (aggregator, benchmark) whose ranking of variants the control changes.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from fedbench.harness.stats import CONFIDENCE, Comparison, Interval, paired_comparison
from fedbench.harness.store import ScoreRow

RESAMPLES = 1000
QuestionScores = Callable[[ScoreRow], dict[str, float]]
AnswerTexts = Callable[[ScoreRow], dict[str, str]]


def _context(judge: str) -> tuple[str, str]:
    """(judge, context) from a judge name: ``judgelm-together@base+DPO+KTOO`` -> (``judgelm-together``, ``base+DPO+KTOO``)."""
    name, _, context = judge.partition("@")
    return name, context


@dataclass(frozen=True)
class ContextShift:
    """One subject's answers judged in two contexts: the score in ``context`` minus the score in ``against``."""

    benchmark: str
    subject: str
    label: str
    judge: str
    context: str
    against: str
    """'' for the judge's own context (the answers' aggregator's file, or fedbench's own together-judging)."""
    comparison: Comparison


def context_shifts(scores: Sequence[ScoreRow], questions: QuestionScores, label: Callable[[ScoreRow], str]) -> list[ContextShift]:
    """Every subject judged by one judge in more than one context, each further context against its first
    (its own context '' where it has one), on the questions both contexts scored."""
    groups: dict[tuple[str, str, str], dict[str, ScoreRow]] = {}
    for row in scores:
        judge, context = _context(row.judge)
        groups.setdefault((row.subject, row.benchmark, judge), {})[context] = row
    out = []
    for (subject, bench, judge), by_context in sorted(groups.items()):
        if len(by_context) < 2:
            continue
        first, *others = sorted(by_context)
        base = {(0, q): x for q, x in questions(by_context[first]).items()}
        for context in others:
            shifted = {(0, q): x for q, x in questions(by_context[context]).items()}
            comparison = paired_comparison(shifted, base, context or "own", first or "own")
            if comparison is not None:
                out.append(ContextShift(bench, subject, label(by_context[context]), judge, context, first, comparison))
    return out


@dataclass(frozen=True)
class Agreement:
    """Two judges' scores of the same answers to one benchmark."""

    benchmark: str
    judge_a: str
    judge_b: str
    rho: float
    rho_interval: Interval | None
    kappa: float
    kappa_interval: Interval | None
    answers: int
    pairs: int
    """Pairs of subjects' answers to one question that both judges scored (what kappa counts)."""


def _preferences(
    a: Mapping[tuple[str, str], float], b: Mapping[tuple[str, str], float], qids: Sequence[str]
) -> tuple[list[int], list[int]]:
    """For every question and every two subjects both judges scored on it: each judge's preference (-1, 0 tie, 1)."""
    by_question: dict[str, list[str]] = {}
    for subject, q in a.keys() & b.keys():
        by_question.setdefault(q, []).append(subject)
    first: list[int] = []
    second: list[int] = []
    for q in qids:
        for s1, s2 in itertools.combinations(sorted(by_question.get(q, [])), 2):
            first.append(int(np.sign(a[(s1, q)] - a[(s2, q)])))
            second.append(int(np.sign(b[(s1, q)] - b[(s2, q)])))
    return first, second


def _kappa(first: Sequence[int], second: Sequence[int]) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(first) | set(second)) < 2:
        return 1.0 if list(first) == list(second) else 0.0  # one category on both sides: kappa is undefined, agreement is total
    return float(cohen_kappa_score(first, second))


def _rho(a: Mapping[tuple[str, str], float], b: Mapping[tuple[str, str], float], keys: Sequence[tuple[str, str]]) -> float:
    x, y = [a[k] for k in keys], [b[k] for k in keys]
    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)


def _question_bootstrap(qids: Sequence[str], statistic: Callable[[Sequence[str]], float], seed: int = 0) -> Interval | None:
    """Percentile interval of a statistic over questions resampled with replacement (answers to one question move
    together: they share its difficulty)."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(RESAMPLES):
        drawn = [qids[i] for i in rng.integers(0, len(qids), len(qids))]
        value = statistic(drawn)
        if np.isfinite(value):
            values.append(value)
    if len(values) < RESAMPLES // 2:
        return None
    tail = (1 - CONFIDENCE) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return Interval(float(low), float(high), "question bootstrap")


def judge_agreement(scores: Sequence[ScoreRow], questions: QuestionScores) -> list[Agreement]:
    """Every two judges (in their own contexts) that scored the same answers of a benchmark, on the answers both scored."""
    by_judge: dict[tuple[str, str], dict[tuple[str, str], float]] = {}
    for row in scores:
        if _context(row.judge)[1]:
            continue  # a context variant judges the same answers beside others: that is the context shift's question
        found = by_judge.setdefault((row.benchmark, row.judge), {})
        for q, x in questions(row).items():
            found[(row.subject, q)] = x
    out = []
    benches = sorted({b for b, _ in by_judge})
    for bench in benches:
        judges = sorted(j for b, j in by_judge if b == bench)
        for ja, jb in itertools.combinations(judges, 2):
            a, b = by_judge[(bench, ja)], by_judge[(bench, jb)]
            keys = sorted(a.keys() & b.keys())
            if len(keys) < 3:
                continue
            qids = sorted({q for _, q in keys})

            def rho_of(drawn: Sequence[str], a: Mapping = a, b: Mapping = b, keys: Sequence = keys) -> float:
                index = {q: [k for k in keys if k[1] == q] for q in set(drawn)}
                return _rho(a, b, [k for q in drawn for k in index[q]])

            def kappa_of(drawn: Sequence[str], a: Mapping = a, b: Mapping = b) -> float:
                return _kappa(*_preferences(a, b, drawn))

            first, second = _preferences(a, b, qids)
            out.append(
                Agreement(
                    bench, ja, jb, _rho(a, b, keys), _question_bootstrap(qids, rho_of), _kappa(first, second),
                    _question_bootstrap(qids, kappa_of) if first else None, len(keys), len(first),
                )
            )  # fmt: skip
    return out


@dataclass(frozen=True)
class LengthControlled:
    """A subject's score beside its length-controlled score on one benchmark and judge."""

    benchmark: str
    judge: str
    subject: str
    label: str
    raw: float
    controlled: float
    interval: Interval | None
    slope: float
    """Score points per word of answer length beyond the base model's, shared by every subject of the fit."""
    words: float
    """Mean answer length minus the base model's, in words."""


def _fit(rows: Sequence[tuple[int, float, float]], subjects: int) -> np.ndarray:
    """Least squares of score on one indicator per subject and the length difference: [effects..., slope]."""
    x = np.zeros((len(rows), subjects + 1))
    y = np.empty(len(rows))
    for i, (s, dlen, score) in enumerate(rows):
        x[i, s], x[i, subjects], y[i] = 1.0, dlen, score
    return np.linalg.lstsq(x, y, rcond=None)[0]


def length_controlled(
    scores: Sequence[ScoreRow], questions: QuestionScores, answers: AnswerTexts, label: Callable[[ScoreRow], str]
) -> list[LengthControlled]:
    """Per benchmark and judge (own contexts, judged answers only) with a base-model subject: each subject's score
    at the base model's answer length. Groups without a base model, or whose lengths do not vary, are left out."""
    groups: dict[tuple[str, str], list[ScoreRow]] = {}
    for row in scores:
        if not _context(row.judge)[1] and row.score is not None:
            groups.setdefault((row.benchmark, row.judge), []).append(row)
    out = []
    for (bench, judge), rows in sorted(groups.items()):
        base = next((r for r in rows if r.method == "base"), None)
        if base is None or len(rows) < 2:
            continue
        base_len = {q: len(t.split()) for q, t in answers(base).items()}
        data: dict[str, list[tuple[int, float, float]]] = {}
        for s, row in enumerate(rows):
            texts = answers(row)
            for q, score in questions(row).items():
                if q in texts and q in base_len:
                    data.setdefault(q, []).append((s, float(len(texts[q].split()) - base_len[q]), score))
        flat = [item for q in sorted(data) for item in data[q]]
        if not flat or len({d for _, d, _ in flat}) < 2:
            continue
        coef = _fit(flat, len(rows))
        qids = sorted(data)
        rng = np.random.default_rng(0)
        draws: list[tuple[np.ndarray, set[int]]] = []
        for _ in range(RESAMPLES):  # questions resampled, each with all its answers
            picked = [item for i in rng.integers(0, len(qids), len(qids)) for item in data[qids[i]]]
            draws.append((_fit(picked, len(rows)), {t for t, _, _ in picked}))
        tail = (1 - CONFIDENCE) / 2 * 100
        for s, row in enumerate(rows):
            mine = [(dlen, score) for t, dlen, score in flat if t == s]
            if not mine:
                continue
            values = [fit[s] for fit, present in draws if s in present]  # a draw without the subject says nothing of it
            low, high = np.percentile(values, [tail, 100 - tail])
            raw = sum(score for _, score in mine) / len(mine)
            words = sum(dlen for dlen, _ in mine) / len(mine)
            interval = Interval(float(low), float(high), "question bootstrap")
            out.append(
                LengthControlled(bench, judge, row.subject, label(row), raw, float(coef[s]), interval, float(coef[-1]), words)
            )
    return out


def ranking_changes(found: Sequence[LengthControlled], group: Callable[[LengthControlled], str]) -> list[str]:
    """The groups (e.g. an aggregator on a benchmark) where length control reverses the order of two subjects (a tie
    on either side reverses nothing): where answer length, not quality, may decide the table."""
    groups: dict[str, list[LengthControlled]] = {}
    for item in found:
        groups.setdefault(group(item), []).append(item)
    changed = []
    for name, items in groups.items():
        reversed_pair = any(
            (x.raw - y.raw) * (x.controlled - y.controlled) < 0 and abs(x.controlled - y.controlled) > 1e-9
            for x, y in itertools.combinations(items, 2)
        )
        if reversed_pair:
            changed.append(name)
    return sorted(changed)
