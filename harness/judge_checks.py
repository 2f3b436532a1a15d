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
- **head to head** (``pairwise = true``, :mod:`fedbench.harness.pairwise`): win rates per pair of variants, and the
  judge's position consistency and first-position bias, from verdicts asked in both answer orders.
- **length control**: AlpacaEval 2's idea, as a linear model: score = subject effect + slope x (answer length -
  the base model's answer length to the same question), fitted over all subjects of a benchmark and judge; the
  subject effect is its length-controlled score, the score it would get at the base model's length. Lengths
  are counted in words of the stored answers (imported answers carry no token counts). A flag marks the groups
  (aggregator, benchmark) whose ranking of variants the control changes.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from fedbench.harness.pairwise import PositionBias, WinRate, pair_statistics
from fedbench.harness.stats import CONFIDENCE, Comparison, Interval, paired_comparison
from fedbench.harness.store import PairVerdict, ScoreRow

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
                out.append(ContextShift(bench, subject, label(by_context[first]), judge, context, first, comparison))
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
    largest: tuple[tuple[str, str, float, float, float], ...] = ()
    """Where the two judges disagree most: (subject, question, judge a's score, judge b's score, gap), the gap being
    the difference of the answer's percentile ranks among each judge's scores (so judges on different scales
    compare), largest first (:data:`DISAGREEMENTS` of them)."""


def _preferences(
    a: Mapping[tuple[str, str], float], b: Mapping[tuple[str, str], float]
) -> dict[str, tuple[list[int], list[int]]]:
    """Per question, for every two subjects both judges scored on it: each judge's preference (-1, 0 tie, 1)."""
    by_question: dict[str, list[str]] = {}
    for subject, q in a.keys() & b.keys():
        by_question.setdefault(q, []).append(subject)
    out: dict[str, tuple[list[int], list[int]]] = {}
    for q, subjects in by_question.items():
        pairs = list(itertools.combinations(sorted(subjects), 2))
        out[q] = (
            [int(np.sign(a[(s1, q)] - a[(s2, q)])) for s1, s2 in pairs],
            [int(np.sign(b[(s1, q)] - b[(s2, q)])) for s1, s2 in pairs],
        )
    return out


def _kappa(first: Sequence[int], second: Sequence[int]) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(first) | set(second)) < 2:
        return 1.0 if list(first) == list(second) else 0.0  # one category on both sides: kappa is undefined, agreement is total
    return float(cohen_kappa_score(first, second))


def _confusion(first: Sequence[int], second: Sequence[int]) -> np.ndarray:
    """3 x 3 counts of (preference of judge a, preference of judge b) over -1, 0, 1."""
    out = np.zeros((3, 3))
    np.add.at(out, (np.asarray(first, dtype=int) + 1, np.asarray(second, dtype=int) + 1), 1)
    return out


def _kappa_of_counts(counts: np.ndarray) -> float:
    """Cohen's kappa from a confusion matrix: what the bootstrap resamples, since a question's pairs move together
    (the reported estimate is scikit-learn's; a test holds the two equal)."""
    n = counts.sum()
    if n == 0:
        return float("nan")
    observed = np.trace(counts) / n
    expected = float(counts.sum(axis=1) @ counts.sum(axis=0)) / n**2
    if expected == 1.0:
        return 1.0 if observed == 1.0 else 0.0
    return float((observed - expected) / (1 - expected))


DISAGREEMENTS = 5
"""How many answers ``--judge-checks`` lists where two judges disagree most."""


def _largest_gaps(
    a: Mapping[tuple[str, str], float], b: Mapping[tuple[str, str], float], keys: Sequence[tuple[str, str]]
) -> tuple[tuple[str, str, float, float, float], ...]:
    """The answers whose percentile ranks under the two judges differ most (ties share their mean rank)."""
    ranks_a = stats.rankdata([a[k] for k in keys]) / len(keys)
    ranks_b = stats.rankdata([b[k] for k in keys]) / len(keys)
    gaps = sorted(zip(keys, np.abs(ranks_a - ranks_b)), key=lambda kg: (-kg[1], kg[0]))[:DISAGREEMENTS]
    return tuple((subject, q, a[(subject, q)], b[(subject, q)], float(gap)) for (subject, q), gap in gaps if gap > 0)


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
            by_question: dict[str, list[tuple[str, str]]] = {}
            for k in keys:
                by_question.setdefault(k[1], []).append(k)
            preferences = _preferences(a, b)

            def rho_of(drawn: Sequence[str], a: Mapping = a, b: Mapping = b, by_question: Mapping = by_question) -> float:
                return _rho(a, b, [k for q in drawn for k in by_question[q]])

            counts = {q: _confusion(f, s) for q, (f, s) in preferences.items()}

            def kappa_of(drawn: Sequence[str], counts: Mapping = counts) -> float:
                return _kappa_of_counts(sum((counts[q] for q in drawn if q in counts), np.zeros((3, 3))))

            pairs = sum(len(f) for f, _ in preferences.values())
            first = [p for q in qids if q in preferences for p in preferences[q][0]]
            second = [p for q in qids if q in preferences for p in preferences[q][1]]
            kappa = _kappa(first, second) if pairs else float("nan")  # one subject: no preference to agree on
            out.append(
                Agreement(
                    bench, ja, jb, _rho(a, b, keys), _question_bootstrap(qids, rho_of), kappa,
                    _question_bootstrap(qids, kappa_of) if pairs else None, len(keys), pairs, _largest_gaps(a, b, keys),
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
    """Per benchmark and judge (own contexts) whose benchmark has base-model answers (judged by any judge, in any
    context): each subject's score at the base model's answer length. Groups without base-model answers, or whose
    lengths do not vary, are left out."""
    groups: dict[tuple[str, str], list[ScoreRow]] = {}
    bases: dict[str, ScoreRow] = {}
    for row in scores:
        if row.method == "base":
            bases.setdefault(row.benchmark, row)
        if not _context(row.judge)[1] and row.score is not None:
            groups.setdefault((row.benchmark, row.judge), []).append(row)
    out = []
    for (bench, judge), rows in sorted(groups.items()):
        base = bases.get(bench)
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


_CONSISTENCY = re.compile(r"position-consistency ([0-9.]+) over (\d+) questions")


@dataclass(frozen=True)
class JudgeChecks:
    """Every check the store can answer without judging again, for ``fedbench leaderboard --judge-checks``."""

    shifts: list[ContextShift]
    agreements: list[Agreement]
    lengths: list[LengthControlled]
    reordered: list[str]
    """'aggregator, benchmark (judge)' groups whose ranking of variants length control reverses."""
    consistency: list[tuple[str, str, float, int]]
    """(benchmark, judge, share of questions whose best answer is the same in both orders, questions) where the
    judge graded answers together in both orders (``swap``)."""
    positions: list[PositionBias] = field(default_factory=list)
    """Head-to-head verdicts' dependence on the answers' order, per benchmark and judge."""
    win_rates: list[WinRate] = field(default_factory=list)
    """Head-to-head win rates per pair of subjects."""
    labels: dict[str, str] = field(default_factory=dict)
    """Subject key -> the row and variant it shows as (``fedavg KTOO``)."""


def subject_label(row: ScoreRow) -> str:
    """``fedavg KTOO``, ``fedavg [int8] DPO`` or ``Base``: the row and variant the leaderboard shows a score under."""
    from fedbench.harness.results.model import row_name
    from fedbench.harness.study_table import BASE_ROW, variant

    return BASE_ROW if row.method == "base" else f"{row_name(row)} {variant(row.method, row.layout)}"


def gather_checks(
    scores: Sequence[ScoreRow], questions: QuestionScores, answers: AnswerTexts, pairs: Sequence[PairVerdict] = ()
) -> JudgeChecks:
    """All the checks over a store's scores (its per-question scores and answer texts passed as callables) and its
    head-to-head verdicts (of the subjects among ``scores``)."""
    lengths = length_controlled(scores, questions, answers, subject_label)
    # a subject's name is its row in its own context (not the tagged row of a further context it was judged in)
    labels = {row.subject: subject_label(row) for row in sorted(scores, key=lambda r: not _context(r.judge)[1])}
    win_rates, positions = pair_statistics([v for v in pairs if v.first in labels and v.second in labels])
    consistency = []
    for row in scores:
        found = _CONSISTENCY.search(row.judge_setting)
        entry = (row.benchmark, row.judge, float(found.group(1)), int(found.group(2))) if found else None
        if entry is not None and entry not in consistency:
            consistency.append(entry)
    return JudgeChecks(
        context_shifts(scores, questions, subject_label),
        judge_agreement(scores, questions),
        lengths,
        ranking_changes(lengths, lambda f: f"{f.label.rsplit(' ', 1)[0]}, {f.benchmark} ({f.judge})"),
        consistency,
        positions,
        win_rates,
        labels,
    )


def _value(x: float) -> str:
    return "n/a" if x != x else f"{x:.2f}"  # nan: undefined (no pairs, or scores that do not vary)


def _interval(i: Interval | None, signed: bool = False) -> str:
    return "" if i is None else (f"[{i.low:+.2f}, {i.high:+.2f}]" if signed else f"[{i.low:.2f}, {i.high:.2f}]")


def checks_tables(c: JudgeChecks) -> list[tuple[str, list[str], list[list[str]]]]:
    """The checks as (title, header, rows) tables, one per kind that has something to show."""
    tables = []
    if c.consistency:
        rows = [[b, j, f"{share:.2f}", str(n)] for b, j, share, n in c.consistency]
        tables.append(
            ("position consistency (answers graded in both orders)", ["benchmark", "judge", "consistent", "questions"], rows)
        )
    if c.positions:
        rows = [
            [p.benchmark, p.judge, f"{p.consistency:.2f}", _interval(p.consistency_interval), f"{p.first:.2f}",
             _interval(p.first_interval), str(p.questions)]
            for p in c.positions
        ]  # fmt: skip
        header = ["benchmark", "judge", "consistent", "95% interval", "first-position wins", "95% interval", "pairs x questions"]
        tables.append(
            ("position bias, head to head (every pair judged in both orders; 0.5 first-position wins: none)", header, rows)
        )
    if c.win_rates:
        rows = [
            [w.benchmark, w.judge, c.labels.get(w.a, w.a), c.labels.get(w.b, w.b), f"{w.wins}/{w.ties}/{w.losses}",
             f"{w.rate:.2f}", _interval(w.interval)]
            for w in c.win_rates
        ]  # fmt: skip
        header = ["benchmark", "judge", "A", "B", "A wins/ties/losses", "A's win rate", "95% interval"]
        tables.append(("win rates, head to head (a verdict that changes with the order is a tie)", header, rows))
    if c.shifts:
        rows = [
            [s.benchmark, s.label, s.judge, f"{s.context} vs {s.against or 'own'}", f"{s.comparison.difference:+.2f}",
             _interval(s.comparison.interval, signed=True), f"{s.comparison.p_value:.4f}", str(s.comparison.n)]
            for s in c.shifts
        ]  # fmt: skip
        header = ["benchmark", "answers", "judge", "context", "shift", "95% interval", "p", "questions"]
        tables.append(("context shift: the same answers judged beside other answers", header, rows))
    if c.agreements:
        rows = [
            [a.benchmark, f"{a.judge_a} / {a.judge_b}", _value(a.rho), _interval(a.rho_interval), _value(a.kappa),
             _interval(a.kappa_interval), str(a.answers), str(a.pairs)]
            for a in c.agreements
        ]  # fmt: skip
        header = ["benchmark", "judges", "Spearman rho", "95% interval", "Cohen kappa", "95% interval", "answers", "pairs"]
        tables.append(("agreement between judges (kappa over pairwise preferences)", header, rows))
        rows = [
            [a.benchmark, f"{a.judge_a} / {a.judge_b}", c.labels.get(subject, subject), q, f"{x:.2f} / {y:.2f}", f"{gap:.2f}"]
            for a in c.agreements
            for subject, q, x, y, gap in a.largest
        ]
        header = ["benchmark", "judges", "answers", "question", "scores", "rank gap"]
        if rows:
            tables.append(("where two judges disagree most (gap between the answer's percentile ranks)", header, rows))
    if c.lengths:
        rows = [
            [
                f.benchmark,
                f.judge,
                f.label,
                f"{f.raw:.2f}",
                f"{f.controlled:.2f}",
                _interval(f.interval),
                f"{f.words:+.0f}",
                f"{f.slope:+.4f}",
            ]
            for f in c.lengths
        ]
        header = ["benchmark", "judge", "answers", "raw", "length-controlled", "95% interval", "words vs base", "per word"]
        tables.append(("length-controlled scores (at the base model's answer length)", header, rows))
    return tables


NO_CHECKS = (
    "No judge checks: no answers judged in two contexts, by two judges, in both orders, head to head, or beside a base model."
)
CHECKS_NOTE = (
    "Read from the store, nothing judged again. Context shift: paired sign-flip test over the questions both contexts "
    "scored. Agreement: question-bootstrap intervals. Length control: score = subject effect + slope x (words - the base "
    "model's words to the same question), least squares over every subject of a benchmark and judge (AlpacaEval 2's "
    "length-control idea as a linear model); the effect is the score at the base model's length. Head to head: MT-Bench's "
    "pairwise protocol, both orders, an order-dependent verdict counted as a tie; win rate = (wins + ties / 2) / questions."
)


def checks_markdown(c: JudgeChecks) -> str:
    out = []
    for title, header, rows in checks_tables(c):
        out += [f"**{title}**", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        out += ["| " + " | ".join(r) + " |" for r in rows] + [""]
    if c.reordered:
        out.append("Length control reverses the ranking in: " + "; ".join(c.reordered))
    if not out:
        out.append(NO_CHECKS)
    return "\n".join(out + ["", CHECKS_NOTE]) + "\n"


def checks_rich(c: JudgeChecks):  # noqa: ANN201 - rich is imported lazily
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    parts: list = []
    for title, header, rows in checks_tables(c):
        table = Table(title=escape(title), title_justify="left")
        for i, col in enumerate(header):
            table.add_column(col, justify="left" if i < 3 else "right")
        for r in rows:
            table.add_row(*(escape(x) for x in r))
        parts.append(table)
    if c.reordered:
        parts.append(Text("length control reverses the ranking in: " + "; ".join(c.reordered), style="yellow"))
    if not parts:
        parts.append(Text(NO_CHECKS))
    return Group(*parts, Text(CHECKS_NOTE, style="dim"))


def checks_json(c: JudgeChecks) -> str:
    import json
    from dataclasses import asdict

    return json.dumps(
        {
            "consistency": [dict(zip(("benchmark", "judge", "consistent", "questions"), x)) for x in c.consistency],
            "context_shifts": [asdict(s) for s in c.shifts],
            "agreements": [asdict(a) for a in c.agreements],
            "length_controlled": [asdict(f) for f in c.lengths],
            "position_bias": [asdict(p) for p in c.positions],
            "win_rates": [
                asdict(w) | {"a_label": c.labels.get(w.a, w.a), "b_label": c.labels.get(w.b, w.b)} for w in c.win_rates
            ],
            "length_reorders": c.reordered,
            "note": CHECKS_NOTE,
        },
        indent=2,
    )
