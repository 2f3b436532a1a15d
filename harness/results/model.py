"""The results wing's read model: the study's table (the matrix) from the store's score rows.

Rows are aggregators (plus Base), column groups are benchmarks, sub-columns are DPO, KTOO and KTOR
(:mod:`fedbench.harness.study_table`). Every entry carries a 95% interval: the one stored with its score
(bootstrap over questions, or Wilson for rates) for a single training seed, or a two-level bootstrap over
seeds and questions when a cell was repeated with ``--seeds``. Within each (aggregator, benchmark) the
variants are compared on the questions (and seeds) they share, with a paired randomisation test whose
p-values are Holm-corrected over the whole table (each judging context its own family); an entry is
marked best only when it is separated from every other variant of its group, otherwise the group's top
entry is marked a tie. The comparisons are also pooled over the aggregators, and where compared cells
were trained with different budgets the model says so.

A cell without a score stays empty, never zero. Nothing here formats: the views
(:mod:`fedbench.harness.results.views`) pick what to show and the renderers how.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from fedbench.harness.baselines import POOLED_LAYOUT
from fedbench.harness.stats import (
    ClientSpread,
    Comparison,
    GapClosed,
    client_spread,
    gap_closed,
    holm,
    paired_comparison,
    seeds_interval,
    wilson,
    winner,
)
from fedbench.harness.store import ScoreRow, Store
from fedbench.harness.study_table import AGGREGATOR_ORDER, BASE, BASE_ROW, BASELINE_ROWS, VARIANTS, benchmark_rank, variant

ALPHA = 0.05
TEST = (
    "paired sign-flip randomisation test on shared questions (and seeds), Holm-corrected over the table "
    f"(each imported judging context its own family), alpha {ALPHA}"
)
POOLED_TEST = (
    "pooled over aggregators: per question, the mean difference over the aggregators both variants were scored under "
    f"(and seeds); sign-flip test over questions; Holm over the pooled comparisons, alpha {ALPHA}. Assumes the "
    "aggregators fixed (the question is about these aggregators, not a sample of them) and one training run per cell "
    "unless seeds were repeated: training noise is not in the interval."
)

QuestionScores = Callable[[ScoreRow], dict[str, float]]
"""Per-question scores behind a score row (the store's judgments), for seed pooling and paired tests."""


@dataclass(frozen=True)
class Entry:
    """One leaderboard cell: a variant's score over its training seeds, with its interval."""

    score: float | None
    ci_low: float | None
    ci_high: float | None
    ci_note: str | None
    n: int
    seeds: tuple[int, ...]
    runs: tuple[ScoreRow, ...]
    """The stored score rows pooled here, one per seed."""
    answer_tokens: float | None = None
    per_client: dict[str, float] = field(default_factory=dict)

    @property
    def scale(self) -> float:
        return self.runs[0].scale

    @property
    def latest(self) -> ScoreRow:
        return max(self.runs, key=lambda r: r.created)


@dataclass(frozen=True)
class Matrix:
    benchmarks: list[str]
    variants: list[str]
    rows: list[str]
    cells: dict[tuple[str, str, str], Entry]
    """(row, benchmark, variant) -> entry; Base scores sit under variant ''."""
    comparisons: dict[tuple[str, str], list[Comparison]] = field(default_factory=dict)
    """(aggregator, benchmark) -> paired comparisons between its variants, Holm-adjusted over the table."""
    pooled: dict[str, list[PooledComparison]] = field(default_factory=dict)
    """benchmark -> each later-minus-earlier variant pair pooled over the aggregators, Holm-adjusted over them all."""
    budgets: dict[str, dict[str, Any]] = field(default_factory=dict)
    """subject -> its recorded training budget (rounds, length, steps, ...), to say where compared cells differ."""
    effects: dict[tuple[str, str], list[Comparison]] = field(default_factory=dict)
    """(tagged row, benchmark) -> each variant against the same variant of its plain row (``median [label-flip 25%]``
    KTOO minus ``median`` KTOO): what a setting (an attack, DP, a codec, dropout) costs each variant; Holm-adjusted
    over these comparisons, a family apart from the variants' comparisons."""

    def entry(self, row: str, bench: str, var: str) -> Entry | None:
        return self.cells.get((row, bench, "" if row == BASE_ROW else var))

    def value(self, row: str, bench: str, var: str) -> float | None:
        entry = self.entry(row, bench, var)
        return None if entry is None else entry.score

    def mark(self, row: str, bench: str, var: str) -> str:
        """'best' when this variant is separated from every other of its group, 'tie' when it is on top but not
        separated, '' otherwise (or when its group had nothing to compare)."""
        if row == BASE_ROW or (row, bench) not in self.comparisons:
            return ""
        scores = {v: x for v in self.variants if (x := self.value(row, bench, v)) is not None}
        if len(scores) < 2 or var not in scores:
            return ""
        best = winner(self.comparisons[(row, bench)], scores, ALPHA)
        if best is not None:
            return "best" if best == var else ""
        return "tie" if scores[var] == max(scores.values()) else ""


@dataclass(frozen=True)
class PooledComparison:
    """A later variant against an earlier one across the aggregators: is it better, whatever the aggregator?"""

    comparison: Comparison
    aggregators: tuple[str, ...]
    """The plain federated rows both variants were scored under (tagged and baseline rows are other experiments)."""


def row_name(row: ScoreRow) -> str:
    """A score's leaderboard row: its aggregator (a baseline's display name), with its privacy and codec settings
    in brackets when it has any, so a DP or compressed cell stands beside the plain one instead of replacing it."""
    name = BASELINE_ROWS.get(row.aggregator, row.aggregator)
    return f"{name} [{row.tag}]" if row.tag else name


def row_order(row: str) -> tuple[int, int, str, tuple[tuple[str, float], ...]]:
    """The study's aggregators in its order, then others, then the baselines; tagged rows after their plain one, in
    the numbers' order (``paired_fraction=0``, ``=0.5``, ``=1``; ``label-flip 10%`` before ``25%``)."""
    name, _, tag = row.partition(" [")
    numbers = tuple((text, float(num) if num else -1.0) for text, num in re.findall(r"(\D*)(\d+(?:\.\d+)?)?", tag) if text or num)
    baselines = list(BASELINE_ROWS.values())
    if name in baselines:
        return (2, baselines.index(name), "", numbers)
    return (0 if name in AGGREGATOR_ORDER else 1, AGGREGATOR_ORDER.index(name) if name in AGGREGATOR_ORDER else 0, name, numbers)


def _pool(runs: list[ScoreRow], questions: QuestionScores | None) -> Entry:
    """One entry from the newest experiment's rows (one per seed): mean over seeds, interval over seeds and questions."""
    latest = max(runs, key=lambda r: r.created)
    same = [r for r in runs if r.settings_key == latest.settings_key] if latest.settings_key else [latest]
    by_seed: dict[int | None, ScoreRow] = {}
    for r in sorted(same, key=lambda r: r.created):
        by_seed[r.seed] = r
    chosen = tuple(by_seed[k] for k in sorted(by_seed, key=lambda s: -1 if s is None else s))
    scored = [r for r in chosen if r.score is not None]
    score = sum(r.score for r in scored) / len(scored) if scored else None  # type: ignore[misc]
    lengths = [r.answer_tokens for r in chosen if r.answer_tokens is not None]
    clients: dict[str, list[float]] = {}
    for r in chosen:
        for client, (value, _) in json.loads(r.per_client or "{}").items():
            if value is not None:
                clients.setdefault(client, []).append(value)
    entry = Entry(
        score,
        latest.ci_low,
        latest.ci_high,
        latest.ci_note,
        max(r.n for r in chosen),
        tuple(r.seed for r in chosen if r.seed is not None),
        chosen,
        sum(lengths) / len(lengths) if lengths else None,
        {c: sum(v) / len(v) for c, v in clients.items()},
    )
    if len(scored) < 2:
        return entry
    if questions is None:
        return replace(entry, ci_low=None, ci_high=None, ci_note="per-question scores not available to pool seeds")
    per_seed = [list(questions(r).values()) for r in scored]
    factor = scale_factor(scored[0], per_seed[0])
    interval = seeds_interval(per_seed)
    pooled = [x for values in per_seed for x in values]
    if interval is not None and factor == 100.0 and interval.low == interval.high:
        # every question of every seed scored the same (0% or 100%): resampling sees no spread, but a rate
        # of 0 in n is still uncertain, so the pooled Wilson interval stands in (never a zero-width one)
        interval = wilson(int(sum(pooled)), len(pooled))
    if interval is None:
        return replace(entry, ci_low=None, ci_high=None, ci_note="fewer than 2 scored questions per seed")
    return replace(entry, ci_low=factor * interval.low, ci_high=factor * interval.high, ci_note=interval.method)


def scale_factor(row: ScoreRow, values: Sequence[float]) -> float:
    """Per-question values to the score's scale: x100 for a rate of 0/1 judgments (AdvBench, preference)."""
    return 100.0 if row.scale >= 100 and values and all(v in (0.0, 1.0) for v in values) else 1.0


def build_matrix(
    scores: Sequence[ScoreRow],
    model: str | None = None,
    judge: str | None = None,
    questions: QuestionScores | None = None,
    budgets: dict[str, dict[str, Any]] | None = None,
) -> Matrix:
    """Arrange score rows as the study's table.

    Rows of one cell repeated over training seeds pool into one entry; where several experiments
    (other settings, other judges) compete for a place, the newest one wins. With ``questions``
    (the store's per-question scores) seeds pool with a two-level interval and the variants of each
    aggregator are compared, per aggregator and pooled over them; without it the stored per-score intervals show
    and nothing is compared. ``judge`` keeps one judge's scores (in all its judging contexts); ``budgets`` (the
    store's, by subject) let the views say where compared cells were trained with different budgets.
    """
    chosen = [s for s in scores if (model is None or s.model == model) and (judge is None or _judged_by(s, judge))]
    if questions is not None:  # read each row's per-question scores once: pooling and the comparisons both use them
        loaded: dict[tuple[str, str, str], dict[str, float]] = {}
        fetch = questions

        def questions(row: ScoreRow) -> dict[str, float]:
            key = (row.subject, row.benchmark, row.judge)
            if key not in loaded:
                loaded[key] = fetch(row)
            return loaded[key]

    grouped: dict[tuple[str, str, str], list[ScoreRow]] = {}
    pooled = [s for s in chosen if s.layout == POOLED_LAYOUT]
    for s in chosen:
        if s.layout != POOLED_LAYOUT:
            row = BASE_ROW if s.method == BASE else row_name(s)
            grouped.setdefault((row, s.benchmark, "" if s.method == BASE else variant(s.method, s.layout)), []).append(s)
    methods = {variant(s.method, s.layout): s.method for s in chosen if s.method != BASE and s.layout != POOLED_LAYOUT}
    for s in pooled:  # a pooled (centralized) cell stands beside every variant of its method: they pool the same data
        mine = [v for v, m in methods.items() if m == s.method] or [variant(s.method, s.layout)]
        for var in mine:
            grouped.setdefault((row_name(s), s.benchmark, var), []).append(s)
    cells = {key: _pool(runs, questions) for key, runs in grouped.items()}
    benchmarks = sorted({b for _, b, _ in cells}, key=benchmark_rank)
    found_vars = {v for _, _, v in cells if v}
    variants = [v for v in VARIANTS.values() if v in found_vars] + sorted(found_vars - set(VARIANTS.values()))
    rows = sorted({r for r, _, _ in cells if r != BASE_ROW}, key=row_order)
    if any(r == BASE_ROW for r, _, _ in cells):
        rows.append(BASE_ROW)
    comparisons = _compare(cells, rows, benchmarks, variants, questions) if questions is not None else {}
    across = _pool_aggregators(cells, rows, benchmarks, variants, questions) if questions is not None else {}
    effects = _against_plain(cells, rows, benchmarks, variants, questions) if questions is not None else {}
    return Matrix(benchmarks, variants, rows, cells, comparisons, across, budgets or {}, effects)


def _judged_by(row: ScoreRow, judge: str) -> bool:
    """Whether a score is ``judge``'s, in any of its judging contexts (``judgelm-together@base+DPO+KTOO`` is
    ``judgelm-together``'s score beside the base model: an imported file's own context, harness/judgment_import.py)."""
    return row.judge == judge or row.judge.startswith(judge + "@")


def _units(entry: Entry, questions: QuestionScores) -> dict[tuple[int, str], float]:
    """An entry's per-question scores keyed by (training seed, question): what paired comparisons match on."""
    return {(r.seed or 0, q): x for r in entry.runs for q, x in questions(r).items()}


def _scaled_units(
    a: Entry, b: Entry, questions: QuestionScores
) -> tuple[dict[tuple[int, str], float], dict[tuple[int, str], float]]:
    """Two entries' per-question scores on ``a``'s reporting scale (a rate as a percentage): what a paired test compares."""
    ua, ub = _units(a, questions), _units(b, questions)
    factor = scale_factor(a.runs[0], list(ua.values()))
    return {k: factor * x for k, x in ua.items()}, {k: factor * x for k, x in ub.items()}


def _pool_aggregators(
    cells: dict[tuple[str, str, str], Entry],
    rows: list[str],
    benchmarks: list[str],
    variants: list[str],
    questions: QuestionScores,
) -> dict[str, list[PooledComparison]]:
    """Each later variant minus each earlier one per benchmark, pooled over the plain federated rows: per question,
    the mean of the per-(aggregator, seed) differences that exist, then one sign-flip test over the questions."""
    plain = [r for r in rows if r in AGGREGATOR_ORDER or (r != BASE_ROW and " [" not in r and r not in BASELINE_ROWS.values())]
    found: list[tuple[str, PooledComparison]] = []
    for bench in benchmarks:
        for earlier, later in itertools.combinations(variants, 2):
            by_question: dict[str, list[float]] = {}
            used = []
            for row in plain:
                a, b = cells.get((row, bench, later)), cells.get((row, bench, earlier))
                if a is None or b is None or a.runs == b.runs:
                    continue
                ua, ub = _scaled_units(a, b, questions)
                shared = ua.keys() & ub.keys()
                if shared:
                    used.append(row)
                for seed, q in shared:
                    by_question.setdefault(q, []).append(ua[(seed, q)] - ub[(seed, q)])
            if len(used) < 2:
                continue  # one aggregator: its own comparison says it all
            mean = {(0, q): sum(d) / len(d) for q, d in by_question.items()}
            comparison = paired_comparison(mean, dict.fromkeys(mean, 0.0), later, earlier)
            if comparison is not None:
                found.append((bench, PooledComparison(comparison, tuple(used))))
    adjusted = holm([p.comparison for _, p in found])
    out: dict[str, list[PooledComparison]] = {}
    for (bench, p), c in zip(found, adjusted):
        out.setdefault(bench, []).append(replace(p, comparison=c))
    return out


BUDGET_LABELS = {"rounds": "round", "max_length": "length", "local_steps": "steps", "batch_size": "batch"}
"""How a budget key reads in a note ("FedAvgM: round DPO 50, KTOO 100, KTOR 200"); others by their key."""


def budget_note(m: Matrix, row: str, variants: Sequence[str] | None = None) -> str:
    """Where the variants of one row (of ``variants``, default all) were trained with different budgets, e.g.
    ``round DPO 50, KTOO 100, KTOR 200``; '' where their recorded budgets agree (or none is recorded)."""
    by_variant: dict[str, dict[str, Any]] = {}
    for var in variants or m.variants:
        entries = [e for (r, _, v), e in m.cells.items() if r == row and v == var]
        recorded = [m.budgets[e.latest.subject] for e in entries if e.latest.subject in m.budgets]
        if recorded:
            by_variant[var] = recorded[0]
    if len(by_variant) < 2:
        return ""
    keys = sorted({k for b in by_variant.values() for k in b}, key=lambda k: (k not in BUDGET_LABELS, k))
    parts = []
    for key in keys:
        values = {var: b.get(key) for var, b in by_variant.items()}
        if len({json.dumps(v) for v in values.values()}) > 1:
            shown = ", ".join(f"{var} {'-' if v is None else v}" for var, v in values.items())
            parts.append(f"{BUDGET_LABELS.get(key, key)} {shown}")
    return "; ".join(parts)


def budget_notes(m: Matrix) -> dict[str, str]:
    """Row -> its unequal-budget note, for the rows that have one."""
    return {row: note for row in m.rows if row != BASE_ROW and (note := budget_note(m, row))}


def _compare(
    cells: dict[tuple[str, str, str], Entry],
    rows: list[str],
    benchmarks: list[str],
    variants: list[str],
    questions: QuestionScores,
) -> dict[tuple[str, str], list[Comparison]]:
    """Every later variant minus every earlier one (KTOO - DPO, KTOR - DPO, KTOR - KTOO) per aggregator and benchmark,
    on matched (seed, question) units, then Holm over the whole table."""
    found: list[tuple[tuple[str, str], Comparison]] = []
    for row, bench in itertools.product(rows, benchmarks):
        present = [v for v in variants if row != BASE_ROW and (row, bench, v) in cells]
        for earlier, later in itertools.combinations(present, 2):
            if cells[(row, bench, earlier)].runs == cells[(row, bench, later)].runs:
                continue  # one centralized cell standing beside KTOO and KTOR: nothing to compare
            a, b = _scaled_units(cells[(row, bench, later)], cells[(row, bench, earlier)], questions)
            comparison = paired_comparison(a, b, later, earlier)
            if comparison is not None:
                found.append(((row, bench), comparison))
    families: dict[str, list[int]] = {}  # judging context -> indices into found
    for i, ((row, bench), c) in enumerate(found):
        families.setdefault(judging_context(cells[(row, bench, c.a)].latest.judge), []).append(i)
    adjusted = list(found)
    for members in families.values():
        for i, c in zip(members, holm([found[i][1] for i in members])):
            adjusted[i] = (found[i][0], c)
    out: dict[tuple[str, str], list[Comparison]] = {}
    for key, c in adjusted:
        out.setdefault(key, []).append(c)
    return out


def _against_plain(
    cells: dict[tuple[str, str, str], Entry],
    rows: list[str],
    benchmarks: list[str],
    variants: list[str],
    questions: QuestionScores,
) -> dict[tuple[str, str], list[Comparison]]:
    """Each tagged row's variants minus the same variants of its plain row (same aggregator, no tag), per benchmark, on
    matched (seed, question) units, Holm over all of them: is KTO more fragile than DPO under the same poisoning?"""
    found: list[tuple[tuple[str, str], Comparison]] = []
    for row, bench, var in itertools.product(rows, benchmarks, variants):
        plain, _, tag = row.partition(" [")
        a, b = cells.get((row, bench, var)), cells.get((plain, bench, var))
        if not tag or plain not in rows or a is None or b is None or a.runs == b.runs:
            continue
        if judging_context(a.latest.judge):
            continue  # the same answers judged in another context: the judge checks' context shift, not a setting's cost
        ua, ub = _scaled_units(a, b, questions)
        comparison = paired_comparison(ua, ub, f"{var} [{tag}", var)
        if comparison is not None:
            found.append(((row, bench), comparison))
    out: dict[tuple[str, str], list[Comparison]] = {}
    for ((row, bench), _), c in zip(found, holm([c for _, c in found])):
        out.setdefault((row, bench), []).append(c)
    return out


def judging_context(judge: str) -> str:
    """The judging context a judge name states after '@' ('' for a judge's own): an imported file that judged
    other answers together (``judgelm-together@base+DPO+KTOO``) is another experiment, so its comparisons
    form a Holm family of their own instead of loosening or tightening the table's."""
    return judge.partition("@")[2]


def comparison_rows(m: Matrix) -> list[dict[str, Any]]:
    """The paired differences of the table, one per (aggregator, benchmark, later - earlier variant), then each tagged
    row's variants against its plain row's (``KTOO [label-flip 25%] - KTOO``: :attr:`Matrix.effects`); ``budget``
    says where the two cells were trained with different budgets ('' where they were not, or nothing is recorded)."""
    out = []
    for (row, bench), found in [*m.comparisons.items(), *m.effects.items()]:
        for c in found:
            out.append(
                {"aggregator": row, "benchmark": bench, "comparison": f"{c.a} - {c.b}"}
                | _comparison_fields(c)
                | {"budget": budget_note(m, row, [c.b, c.a])}
            )
    return out


def _comparison_fields(c: Comparison) -> dict[str, Any]:
    return {
        "difference": c.difference,
        "ci_low": c.interval.low if c.interval else None,
        "ci_high": c.interval.high if c.interval else None,
        "p_value": c.p_value,
        "p_holm": c.p_holm,
        "n": c.n,
        "significant": c.p_holm < ALPHA,
    }


def pooled_rows(m: Matrix) -> list[dict[str, Any]]:
    """The comparisons pooled over aggregators, one per (benchmark, later - earlier variant); ``n`` counts questions."""
    out = []
    for bench, found in m.pooled.items():
        for p in found:
            c = p.comparison
            unequal = [f"{row}: {note}" for row in p.aggregators if (note := budget_note(m, row, [c.b, c.a]))]
            out.append(
                {"benchmark": bench, "comparison": f"{c.a} - {c.b}", "aggregators": list(p.aggregators)}
                | _comparison_fields(c)
                | {"budget": "; ".join(unequal)}
            )
    return out


@dataclass(frozen=True)
class GapRow:
    """A federated entry between its two baselines on a per-client (held-out) benchmark: how much of the gap it closes."""

    aggregator: str
    benchmark: str
    variant: str
    federated: float | None
    """The federated score on the units all three scored (the pairs of the clients local-only training reached)."""
    local: float | None
    """The local-only score on those units, each client's pairs scored with its own adapter."""
    centralized: float | None
    local_clients: ClientSpread | None
    """Local only across clients: mean, worst, 10th percentile."""
    gap: GapClosed


def gap_rows(m: Matrix, questions: QuestionScores) -> list[GapRow]:
    """For every federated entry that has both baselines on a benchmark scored per client (the held-out pairs):
    where it lies between local only (0%) and centralized (100%), on the (seed, pair) units all three scored."""
    local_row, central_row = BASELINE_ROWS["local"], BASELINE_ROWS["centralized"]
    out = []
    for row, bench, var in itertools.product(m.rows, m.benchmarks, m.variants):
        fed, local, central = (m.entry(r, bench, var) for r in (row, local_row, central_row))
        is_baseline = row.partition(" [")[0] in (local_row, central_row)  # tagged baselines too
        if row == BASE_ROW or is_baseline or fed is None or local is None or central is None or not local.per_client:
            continue

        def units(entry: Entry) -> dict[object, float]:
            values = _units(entry, questions)
            factor = scale_factor(entry.runs[0], list(values.values()))
            return {k: factor * x for k, x in values.items()}

        gap = gap_closed(units(fed), units(local), units(central))
        f, lo, c = gap.means or (None, None, None)
        out.append(GapRow(row, bench, var, f, lo, c, client_spread(local.per_client), gap))
    return out


@dataclass(frozen=True)
class ClientView:
    """A cell's per-client scores on one benchmark, with the fairness summary and its clients' training losses."""

    cell: str
    benchmark: str
    scores: dict[str, float]
    spread: ClientSpread | None
    train_loss: dict[str, float]
    malicious: tuple[str, ...] = ()
    """The cell's malicious clients (its run directory's ``attack.json``): their held-out scores are reported apart."""

    def mean_of(self, malicious: bool) -> float | None:
        """Mean score over the honest (``malicious=False``) or the malicious clients; None when there are none."""
        found = [x for c, x in self.scores.items() if (c in self.malicious) == malicious]
        return sum(found) / len(found) if found else None


def client_views(
    m: Matrix,
    losses: Callable[[ScoreRow], dict[str, float]] | None = None,
    attackers: Callable[[ScoreRow], Sequence[str]] | None = None,
) -> list[ClientView]:
    """Per-client scores of every entry that has them (benchmarks whose questions belong to clients), with who was
    malicious in the cell (``attackers``: read from its run directory)."""
    views = []
    for (row, bench, var), e in sorted(m.cells.items()):
        if not e.per_client:
            continue
        cell = BASE if row == BASE_ROW else f"{var} {row}"
        bad = tuple(attackers(e.latest)) if attackers else ()
        spread = client_spread(e.per_client)
        views.append(ClientView(cell, bench, e.per_client, spread, losses(e.latest) if losses else {}, bad))
    return views


def length_rows(m: Matrix) -> list[tuple[str, str, float]]:
    """(cell, benchmark, mean answer length in tokens): judges favour long answers, so lengths sit beside scores."""
    return [
        (BASE if row == BASE_ROW else f"{var} {row}", bench, e.answer_tokens)
        for (row, bench, var), e in sorted(m.cells.items())
        if e.answer_tokens is not None
    ]


def store_questions(store: Store) -> QuestionScores:
    """The store's per-question scores behind a score row: what seed pooling and the paired tests read."""
    return lambda r: store.question_scores(r.subject, r.benchmark, r.judge)


def store_matrix(store: Store, model: str | None = None, judge: str | None = None) -> Matrix:
    """The study's table of a store: every score, its per-question scores and the recorded training budgets."""
    return build_matrix(store.scores(), model=model, judge=judge, questions=store_questions(store), budgets=store.budgets())
