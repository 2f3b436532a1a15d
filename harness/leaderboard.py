"""The study's table from the results store: rows are aggregators (plus Base), column groups are
benchmarks, sub-columns are DPO, KTOO and KTOR.

Every entry carries a 95% interval: the one stored with its score (bootstrap over questions, or
Wilson for rates) for a single training seed, or a two-level bootstrap over seeds and questions
when a cell was repeated with ``--seeds``. Within each (aggregator, benchmark) the variants are
compared on the questions (and seeds) they share, with a paired randomisation test whose p-values
are Holm-corrected over the whole table; an entry is marked best only when it is separated from
every other variant of its group, otherwise the group's top entry is marked a tie.

A cell without a score stays empty, never zero. The same matrix renders to the terminal (rich),
Markdown, CSV, JSON, a self-contained HTML page and a grouped-bar PNG with error bars.
"""

from __future__ import annotations

import csv
import html
import io
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fedbench.harness.baselines import POOLED_LAYOUT
from fedbench.harness.stats import (
    ClientSpread,
    Comparison,
    GapClosed,
    client_spread,
    gap_closed,
    holm,
    paired_comparison,
    score_interval,
    seeds_interval,
    wilson,
    winner,
)
from fedbench.harness.store import ScoreRow

if TYPE_CHECKING:  # reference.py reads its tables in this module's names, so it imports from here
    from fedbench.harness.reference import ReferenceTable

AGGREGATOR_ORDER = ("fedavg", "fedprox", "scaffold", "fedavgm", "fedyogi", "fedadagrad", "fedadam")
VARIANTS = {("dpo", "original"): "DPO", ("kto", "original"): "KTOO", ("kto", "redistributed"): "KTOR"}
BENCHMARK_ORDER = ("mt_bench_1", "vicuna", "advbench", "preference.reward", "preference.likelihood")
BASE_ROW = "Base"
BASELINE_ROWS = {"centralized": "Centralized", "local": "Local only"}
"""Rows of the baseline aggregators (harness/baselines.py), shown below the federated ones and above Base."""
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


def variant(method: str, layout: str) -> str:
    """The study's column name for a method x layout (other pairs get a descriptive name)."""
    return VARIANTS.get((method, layout), f"{method.upper()}-{layout}")


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


def _row_order(row: str) -> tuple[int, int, str, str]:
    """The study's aggregators in its order, then others, then the baselines; tagged rows after their plain one."""
    name, _, tag = row.partition(" [")
    baselines = list(BASELINE_ROWS.values())
    if name in baselines:
        return (2, baselines.index(name), "", tag)
    return (0 if name in AGGREGATOR_ORDER else 1, AGGREGATOR_ORDER.index(name) if name in AGGREGATOR_ORDER else 0, name, tag)


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
    factor = _factor(scored[0], per_seed[0])
    interval = seeds_interval(per_seed)
    pooled = [x for values in per_seed for x in values]
    if interval is not None and factor == 100.0 and interval.low == interval.high:
        # every question of every seed scored the same (0% or 100%): resampling sees no spread, but a rate
        # of 0 in n is still uncertain, so the pooled Wilson interval stands in (never a zero-width one)
        interval = wilson(int(sum(pooled)), len(pooled))
    if interval is None:
        return replace(entry, ci_low=None, ci_high=None, ci_note="fewer than 2 scored questions per seed")
    return replace(entry, ci_low=factor * interval.low, ci_high=factor * interval.high, ci_note=interval.method)


def _factor(row: ScoreRow, values: Sequence[float]) -> float:
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
            row = BASE_ROW if s.method == "base" else row_name(s)
            grouped.setdefault((row, s.benchmark, "" if s.method == "base" else variant(s.method, s.layout)), []).append(s)
    methods = {variant(s.method, s.layout): s.method for s in chosen if s.method != "base" and s.layout != POOLED_LAYOUT}
    for s in pooled:  # a pooled (centralized) cell stands beside every variant of its method: they pool the same data
        mine = [v for v, m in methods.items() if m == s.method] or [variant(s.method, s.layout)]
        for var in mine:
            grouped.setdefault((row_name(s), s.benchmark, var), []).append(s)
    cells = {key: _pool(runs, questions) for key, runs in grouped.items()}
    benchmarks = sorted({b for _, b, _ in cells}, key=lambda b: (BENCHMARK_ORDER.index(b) if b in BENCHMARK_ORDER else 99, b))
    found_vars = {v for _, _, v in cells if v}
    variants = [v for v in VARIANTS.values() if v in found_vars] + sorted(found_vars - set(VARIANTS.values()))
    rows = sorted({r for r, _, _ in cells if r != BASE_ROW}, key=_row_order)
    if any(r == BASE_ROW for r, _, _ in cells):
        rows.append(BASE_ROW)
    comparisons = _compare(cells, rows, benchmarks, variants, questions) if questions is not None else {}
    across = _pool_aggregators(cells, rows, benchmarks, variants, questions) if questions is not None else {}
    return Matrix(benchmarks, variants, rows, cells, comparisons, across, budgets or {})


def _judged_by(row: ScoreRow, judge: str) -> bool:
    """Whether a score is ``judge``'s, in any of its judging contexts (``judgelm-together@base+DPO+KTOO`` is
    ``judgelm-together``'s score beside the base model: an imported file's own context, harness/judgment_import.py)."""
    return row.judge == judge or row.judge.startswith(judge + "@")


def _units(entry: Entry, questions: QuestionScores) -> dict[tuple[int, str], float]:
    """An entry's per-question scores keyed by (training seed, question): what paired comparisons match on."""
    return {(r.seed or 0, q): x for r in entry.runs for q, x in questions(r).items()}


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
                factor = _factor(a.runs[0], list(_units(a, questions).values()))
                ua, ub = _units(a, questions), _units(b, questions)
                shared = ua.keys() & ub.keys()
                if shared:
                    used.append(row)
                for seed, q in shared:
                    by_question.setdefault(q, []).append(factor * (ua[(seed, q)] - ub[(seed, q)]))
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
        units = {}
        for var in variants:
            entry = cells.get((row, bench, var))
            if entry is not None and row != BASE_ROW:
                units[var] = _units(entry, questions)
        for earlier, later in itertools.combinations([v for v in variants if v in units], 2):
            if cells[(row, bench, earlier)].runs == cells[(row, bench, later)].runs:
                continue  # one centralized cell standing beside KTOO and KTOR: nothing to compare
            factor = _factor(cells[(row, bench, later)].runs[0], list(units[later].values()))
            a = {k: factor * x for k, x in units[later].items()}
            b = {k: factor * x for k, x in units[earlier].items()}
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


def judging_context(judge: str) -> str:
    """The judging context a judge name states after '@' ('' for a judge's own): an imported file that judged
    other answers together (``judgelm-together@base+DPO+KTOO``) is another experiment, so its comparisons
    form a Holm family of their own instead of loosening or tightening the table's."""
    return judge.partition("@")[2]


def _fmt(value: float | None, scale: float) -> str:
    if value is None:
        return ""
    return f"{value:.1f}" if scale >= 100 else f"{value:.2f}"


def entry_text(entry: Entry | None, with_interval: bool = True) -> str:
    """``8.14 ±0.21``: the score and the half-width of its 95% interval (exact bounds are in CSV/JSON), or
    ``0.0 [0.0, 39.0]`` when the interval is lopsided;
    ``(def.)`` marks a value fixed by definition, ``(no CI)`` a score without an interval (never a zero-width one)."""
    if entry is None or entry.score is None:
        return ""
    return _fmt(entry.score, entry.scale) + _interval_suffix(entry, with_interval)


def _interval_suffix(entry: Entry, with_interval: bool = True) -> str:
    """What :func:`entry_text` writes after the score: `` ±0.21``, `` [0.0, 39.0]``, `` (def.)``, `` (no CI)`` or ''."""
    if with_interval and entry.score is not None and entry.ci_low is not None and entry.ci_high is not None:
        below, above = entry.score - entry.ci_low, entry.ci_high - entry.score
        if abs(above - below) <= 0.25 * max(above + below, 1e-12):
            return f" ±{_fmt((entry.ci_high - entry.ci_low) / 2, entry.scale)}"
        # a lopsided interval (a rate near 0 or 100%) would read wrong as ±
        return f" [{_fmt(entry.ci_low, entry.scale)}, {_fmt(entry.ci_high, entry.scale)}]"
    if entry.ci_note and "definition" in entry.ci_note:
        return " (def.)"
    if with_interval and entry.ci_note:
        return " (no CI)"  # why is in the JSON's ci_note: an older store, fewer than 2 scored questions, ...
    return ""


MARKS = {"best": "*", "tie": "~", "": ""}
LEGEND = (
    f"* best of its aggregator and benchmark, separated from every other variant; ~ on top but tied. "
    f"Test: {TEST}. ± half-width of the 95% interval ([lo, hi] where it is lopsided) "
    "(bootstrap over questions, Wilson for rates, "
    "seeds x questions bootstrap over repeated seeds); (no CI): no interval, the reason is in the JSON's ci_note."
)


def _table(m: Matrix, marks: bool = True) -> tuple[list[str], list[list[str]]]:
    header = ["aggregator"] + [f"{b} {v}" for b in m.benchmarks for v in m.variants]
    body = []
    for row in m.rows:
        line = [row]
        for b in m.benchmarks:
            for v in m.variants:
                line.append(entry_text(m.entry(row, b, v)) + (MARKS[m.mark(row, b, v)] if marks else ""))
        body.append(line)
    return header, body


def to_markdown(m: Matrix) -> str:
    header, body = _table(m, marks=False)
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for line, row in zip(body, m.rows):
        cells = [line[0]]
        i = 1
        for b in m.benchmarks:
            for v in m.variants:
                mark = m.mark(row, b, v)
                cells.append(f"**{line[i]}**" if mark == "best" else (f"{line[i]} (tie)" if mark == "tie" else line[i]))
                i += 1
        out.append("| " + " | ".join(cells) + " |")
    unequal = "".join(f"\nUnequal budgets, {row}: {note}" for row, note in budget_notes(m).items())
    return (
        "\n".join(out)
        + f"\n\n(bold: best, separated from the other variants; tie: on top, not separated; empty = not run)\n{LEGEND}\n"
        + (unequal[1:] + "\n" if unequal else "")
    )


def to_csv(m: Matrix) -> str:
    """Scores (no marks) in the study's layout, then each score's interval bounds, then its per-seed scores."""
    header, body = _table(m, marks=False)
    columns = [(b, v) for b in m.benchmarks for v in m.variants]
    header = (
        ["aggregator"]
        + [f"{b} {v}" for b, v in columns]
        + [f"{b} {v} lo" for b, v in columns]
        + [f"{b} {v} hi" for b, v in columns]
        + [f"{b} {v} seeds" for b, v in columns]
    )
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    for row in m.rows:
        entries = [m.entry(row, b, v) for b, v in columns]
        writer.writerow(
            [row]
            + [_fmt(e.score, e.scale) if e else "" for e in entries]
            + [_fmt(e.ci_low, e.scale) if e else "" for e in entries]
            + [_fmt(e.ci_high, e.scale) if e else "" for e in entries]
            + [";".join(f"{r.seed}:{_fmt(r.score, r.scale)}" for r in e.runs if r.seed is not None) if e else "" for e in entries]
        )
    return buf.getvalue()


def to_json(m: Matrix) -> str:
    entries = []
    for (row, bench, var), e in sorted(m.cells.items()):
        latest = e.latest
        entries.append(
            {
                "row": row,
                "benchmark": bench,
                "variant": var or None,
                "method": latest.method,
                "layout": latest.layout,
                "aggregator": latest.aggregator,
                "model": latest.model,
                "judge": latest.judge,
                "judge_setting": latest.judge_setting,
                "score": e.score,
                "scale": e.scale,
                "ci_low": e.ci_low,
                "ci_high": e.ci_high,
                "ci_note": e.ci_note,
                "n": e.n,
                "failures": sum(r.failures for r in e.runs),
                "seeds": list(e.seeds),
                "answer_tokens": e.answer_tokens,
                "per_seed": [
                    {
                        "seed": r.seed,
                        "subject": r.subject,
                        "score": r.score,
                        "ci_low": r.ci_low,
                        "ci_high": r.ci_high,
                        "n": r.n,
                        "failures": r.failures,
                    }
                    for r in e.runs
                ],
                "best": m.mark(row, bench, var) == "best",
                "tie": m.mark(row, bench, var) == "tie",
                "bytes_down": latest.bytes_down,
                "bytes_up": latest.bytes_up,
            }
        )
    return json.dumps(
        {
            "benchmarks": m.benchmarks,
            "variants": m.variants,
            "rows": m.rows,
            "test": TEST,
            "entries": entries,
            "unequal_budgets": budget_notes(m),
        },
        indent=2,
    )


def comparison_rows(m: Matrix) -> list[dict[str, Any]]:
    """The paired differences of the table, one per (aggregator, benchmark, later - earlier variant); ``budget``
    says where the two cells were trained with different budgets ('' where they were not, or nothing is recorded)."""
    out = []
    for (row, bench), found in m.comparisons.items():
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


def compare_json(m: Matrix) -> str:
    return json.dumps(
        {"test": TEST, "comparisons": comparison_rows(m), "pooled_test": POOLED_TEST, "pooled": pooled_rows(m)}, indent=2
    )


def _interval_text(c: dict[str, Any]) -> str:
    return "" if c["ci_low"] is None else f"[{c['ci_low']:+.2f}, {c['ci_high']:+.2f}]"


def compare_markdown(m: Matrix) -> str:
    lines = ["| aggregator | benchmark | comparison | difference | 95% interval | p | p (Holm) | n | unequal budget |"]
    lines.append("|" + "---|" * 9)
    for c in comparison_rows(m):
        diff = f"**{c['difference']:+.2f}**" if c["significant"] else f"{c['difference']:+.2f}"
        lines.append(
            f"| {c['aggregator']} | {c['benchmark']} | {c['comparison']} | {diff} | {_interval_text(c)} | {c['p_value']:.4f} | "
            f"{c['p_holm']:.4f} | {c['n']} | {c['budget']} |"
        )
    lines.append(f"\nBold: significant after Holm. Test: {TEST}.")
    pooled = pooled_rows(m)
    if pooled:
        lines += ["", "**Pooled over aggregators**", ""]
        lines += [
            "| benchmark | comparison | aggregators | difference | 95% interval | p | p (Holm) | questions |",
            "|" + "---|" * 8,
        ]
        for c in pooled:
            diff = f"**{c['difference']:+.2f}**" if c["significant"] else f"{c['difference']:+.2f}"
            lines.append(
                f"| {c['benchmark']} | {c['comparison']} | {len(c['aggregators'])} | {diff} | {_interval_text(c)} | "
                f"{c['p_value']:.4f} | {c['p_holm']:.4f} | {c['n']} |"
            )
        lines.append(f"\n{POOLED_TEST}")
        lines += [f"Unequal budgets under {c['benchmark']} {c['comparison']}: {c['budget']}" for c in pooled if c["budget"]]
    return "\n".join(lines) + "\n"


def compare_csv(m: Matrix) -> str:
    """Per-aggregator comparisons, then the pooled ones with ``pooled`` as their aggregator."""
    rows = comparison_rows(m)
    rows += [{"aggregator": "pooled"} | {k: v for k, v in c.items() if k != "aggregators"} for c in pooled_rows(m)]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]) if rows else ["aggregator"])
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def compare_rich(m: Matrix):  # noqa: ANN201 - rich is imported lazily
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table

    def shown(c: dict[str, Any]) -> list[str]:
        diff = f"[bold]{c['difference']:+.2f}[/]" if c["significant"] else f"{c['difference']:+.2f}"
        return [diff, _interval_text(c), f"{c['p_value']:.4f}", f"{c['p_holm']:.4f}", str(c["n"])]

    numbers = ("difference", "95% interval", "p", "p (Holm)", "n")
    table = Table(title="paired comparisons (bold: significant after Holm)", caption=TEST)
    for col in ("aggregator", "benchmark", "comparison", *numbers, "unequal budget"):
        table.add_column(col, justify="right" if col in numbers else "left")
    for c in comparison_rows(m):
        table.add_row(c["aggregator"], c["benchmark"], c["comparison"], *shown(c), escape(c["budget"]))
    pooled = pooled_rows(m)
    if not pooled:
        return table
    across = Table(title="pooled over aggregators (bold: significant after Holm)", caption=POOLED_TEST)
    for col in ("benchmark", "comparison", "aggregators", *numbers[:-1], "questions", "unequal budget"):
        across.add_column(col, justify="left" if col in ("benchmark", "comparison", "unequal budget") else "right")
    for c in pooled:
        across.add_row(c["benchmark"], c["comparison"], str(len(c["aggregators"])), *shown(c), escape(c["budget"]))
    return Group(table, across)


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
            values = {(r.seed or 0, q): x for r in entry.runs for q, x in questions(r).items()}
            factor = _factor(entry.runs[0], list(values.values()))
            return {k: factor * x for k, x in values.items()}

        gap = gap_closed(units(fed), units(local), units(central))
        f, lo, c = gap.means or (None, None, None)
        out.append(GapRow(row, bench, var, f, lo, c, client_spread(local.per_client), gap))
    return out


def gap_text(g: GapClosed) -> str:
    """``57% [17, 100]``: the gap closed and its interval, or '' when there is none (the note says why)."""
    if g.gap is None:
        return ""
    return f"{g.gap:.0f}%" + (f" [{g.interval.low:.0f}, {g.interval.high:.0f}]" if g.interval else "")


GAP_CAPTION = (
    "Scores and gap closed on the n held-out pairs all three scored (local only scores only the clients it trained). "
    "gap closed = 100 (federated - local only) / (centralized - local only): "
    "0% = no better than each client training alone, 100% = as good as pooling the data; [95% paired bootstrap interval]. "
    "Local only: each client's pairs scored with its own adapter; mean / worst / p10 across clients."
)


def gaps_rich(found: Sequence[GapRow]):  # noqa: ANN201 - rich is imported lazily
    from rich.table import Table

    table = Table(title="Is federation worth it? federated cells between their baselines", caption=GAP_CAPTION)
    columns = (
        "aggregator",
        "benchmark",
        "variant",
        "n",
        "local only",
        "local mean/worst/p10",
        "federated",
        "centralized",
        "gap closed",
    )
    for col in columns:
        table.add_column(col, justify="left" if col in columns[:3] else "right")
    for g in found:
        spread = g.local_clients
        table.add_row(
            g.aggregator,
            g.benchmark,
            g.variant,
            str(g.gap.n),
            _fmt(g.local, 100),
            f"{spread.mean:.1f}/{spread.worst:.1f}/{spread.p10:.1f}" if spread else "",
            _fmt(g.federated, 100),
            _fmt(g.centralized, 100),
            gap_text(g.gap) or g.gap.note,
        )
    return table


def gaps_markdown(found: Sequence[GapRow]) -> str:
    lines = ["| aggregator | benchmark | variant | local only | federated | centralized | gap closed | n |", "|" + "---|" * 8]
    for g in found:
        lines.append(
            f"| {g.aggregator} | {g.benchmark} | {g.variant} | {_fmt(g.local, 100)} | {_fmt(g.federated, 100)} | "
            f"{_fmt(g.centralized, 100)} | {gap_text(g.gap) or g.gap.note} | {g.gap.n} |"
        )
    return "\n".join(lines) + f"\n\n{GAP_CAPTION}\n"


def gaps_json(found: Sequence[GapRow]) -> str:
    rows = [
        {
            "aggregator": g.aggregator,
            "benchmark": g.benchmark,
            "variant": g.variant,
            "federated": g.federated,
            "local_only": g.local,
            "local_only_clients": asdict(g.local_clients) if g.local_clients else None,
            "centralized": g.centralized,
            "gap_closed": g.gap.gap,
            "ci_low": g.gap.interval.low if g.gap.interval else None,
            "ci_high": g.gap.interval.high if g.gap.interval else None,
            "ci_method": g.gap.interval.method if g.gap.interval else None,
            "n": g.gap.n,
            "note": g.gap.note or None,
        }
        for g in found
    ]
    return json.dumps({"definition": GAP_CAPTION, "gap_closed": rows}, indent=2)


@dataclass(frozen=True)
class ClientView:
    """A cell's per-client scores on one benchmark, with the fairness summary and its clients' training losses."""

    cell: str
    benchmark: str
    scores: dict[str, float]
    spread: ClientSpread | None
    train_loss: dict[str, float]


def client_views(m: Matrix, losses: Callable[[ScoreRow], dict[str, float]] | None = None) -> list[ClientView]:
    """Per-client scores of every entry that has them (benchmarks whose questions belong to clients)."""
    views = []
    for (row, bench, var), e in sorted(m.cells.items()):
        if not e.per_client:
            continue
        cell = "base" if row == BASE_ROW else f"{var} {row}"
        views.append(ClientView(cell, bench, e.per_client, client_spread(e.per_client), losses(e.latest) if losses else {}))
    return views


def clients_json(views: Sequence[ClientView]) -> str:
    return json.dumps({"cells": [asdict(v) for v in views]}, indent=2)


def clients_rich(views: Sequence[ClientView]):  # noqa: ANN201 - rich is imported lazily
    from rich.table import Table

    table = Table(title="per-client scores (fairness): mean over clients, worst client, 10th percentile, max - min")
    for col in ("cell", "benchmark", "clients", "mean", "worst (client)", "p10", "spread", "train loss mean/worst"):
        table.add_column(col, justify="left" if col in ("cell", "benchmark") else "right")
    for v in views:
        s = v.spread
        loss = f"{sum(v.train_loss.values()) / len(v.train_loss):.3f}/{max(v.train_loss.values()):.3f}" if v.train_loss else ""
        if s is None:
            continue
        table.add_row(
            v.cell,
            v.benchmark,
            str(s.clients),
            f"{s.mean:.1f}",
            f"{s.worst:.1f} ({s.worst_client})",
            f"{s.p10:.1f}",
            f"{s.spread:.1f}",
            loss,
        )
    return table


# --- beside a published table (--reference) -------------------------------------------------------------

MISSING = "-"
REFERENCE_LEGEND = (
    "difference = yours - paper, on fedbench's scale of the benchmark (judge scores /10, rates in % /100); "
    "- : that side has no value. Intervals (95%) cover question sampling (and seeds), not the differences of model, "
    "judge, data or setup named above; the paper's, where its per-question scores are known, are computed from them "
    "as yours are (around the mean they give, which can differ from the printed number)."
)


@dataclass(frozen=True)
class ReferenceEntry:
    """One entry beside its published value; either side may be missing."""

    row: str
    benchmark: str
    variant: str
    """'' for the base model."""
    yours: Entry | None
    paper: float | None
    """On ``scale`` (converted where the reference states another scale for the benchmark)."""
    scale: float | None
    paper_entry: Entry | None = None
    """The paper's entry computed from its per-question scores (interval, comparisons), where the reference has them."""

    @property
    def score(self) -> float | None:
        return None if self.yours is None else self.yours.score

    @property
    def difference(self) -> float | None:
        return None if self.score is None or self.paper is None else self.score - self.paper

    @property
    def paper_in_interval(self) -> bool | None:
        """Whether the published value lies inside your 95% interval (None without an interval or a paper value)."""
        e = self.yours
        if e is None or e.ci_low is None or e.ci_high is None or self.paper is None:
            return None
        return e.ci_low <= self.paper <= e.ci_high


@dataclass(frozen=True)
class ReferenceView:
    """Your leaderboard entries beside a reference table's, with the model and judge each side used."""

    reference: ReferenceTable
    benchmarks: list[str]
    entries: list[ReferenceEntry]
    models: list[str]
    """Your base models (of the entries shown)."""
    judges: dict[str, list[str]]
    """Benchmark -> your judges on it (name, and the judge model where it has one)."""
    converted: list[str]
    """Benchmarks whose published numbers were put on fedbench's scale."""
    unequal: dict[str, str] = field(default_factory=dict)
    """Row -> where your cells of that row were trained with different budgets."""
    paper: Matrix | None = None
    """The reference's own matrix from its per-question scores: its intervals and paired comparisons (Holm over its
    table), None where the reference publishes numbers only."""

    def caption(self) -> list[str]:
        """Which model and judge each side used: 'yours: ...' and 'paper (...): ...'."""
        by_judge: dict[str, list[str]] = {}
        for bench, labels in self.judges.items():
            for label in labels:
                by_judge.setdefault(label, []).append(bench)
        yours = (
            f"yours: model {', '.join(self.models)}; judge "
            + ", ".join(f"{label} ({', '.join(benches)})" for label, benches in by_judge.items())
            if self.models
            else "yours: no scores (run `fedbench run` or `fedbench eval`)"
        )
        paper_judges: dict[str, list[str]] = {}
        for bench in self.benchmarks:
            if any(e.benchmark == bench and e.paper is not None for e in self.entries):
                paper_judges.setdefault(self.reference.judge_for(bench), []).append(bench)
        ref = self.reference
        about = ref.name if ref.source == ref.name else f"{ref.name}, {ref.source}"
        paper = f"paper ({about}): model {ref.model}; judge " + ", ".join(
            f"{label} ({', '.join(benches)})" for label, benches in paper_judges.items()
        )
        lines = [yours, paper]
        lines += [f"yours, unequal budgets, {row}: {note}" for row, note in self.unequal.items()]
        for bench in self.converted:
            lines.append(f"the paper's {bench} (/{ref.scales[bench]:g}) is shown on fedbench's scale")
        return lines

    def rows(self, benchmark: str) -> list[ReferenceEntry]:
        return [e for e in self.entries if e.benchmark == benchmark]


def _judge_label(row: ScoreRow) -> str:
    """``judgelm (BAAI/JudgeLM-13B-v1.0)``: the judge plugin and, where its setting names one, the judge model."""
    model = next((part.split("=", 1)[1] for part in row.judge_setting.split(", ") if part.startswith("model=")), None)
    return f"{row.judge} ({model})" if model else row.judge


def _ordered(names: set[str], order: Sequence[str]) -> list[str]:
    return [n for n in order if n in names] + sorted(names - set(order))


def reference_view(m: Matrix, ref: ReferenceTable) -> ReferenceView:
    """Every entry either side has, per benchmark: aggregators in the study's order, DPO/KTOO/KTOR, Base last."""
    paper_keys = set(ref.scores)
    benchmarks = sorted(
        set(m.benchmarks) | {b for _, b, _ in paper_keys},
        key=lambda b: (BENCHMARK_ORDER.index(b) if b in BENCHMARK_ORDER else 99, b),
    )
    variants = _ordered(set(m.variants) | {v for _, _, v in paper_keys if v}, list(VARIANTS.values()))
    aggs = _ordered({r for r in m.rows if r != BASE_ROW} | {r for r, _, _ in paper_keys if r != BASE_ROW}, AGGREGATOR_ORDER)
    entries: list[ReferenceEntry] = []
    converted: list[str] = []
    published = paper_matrix(ref)
    for bench in benchmarks:
        yours_scale = next((e.scale for (_, b, _), e in m.cells.items() if b == bench), None)
        paper_scale = ref.scale(bench)
        factor = 1.0
        if yours_scale is not None and paper_scale is not None and paper_scale != yours_scale:
            factor = yours_scale / paper_scale
            converted.append(bench)
        for row, var in [(a, v) for a in aggs for v in variants] + [(BASE_ROW, "")]:
            yours, paper = m.entry(row, bench, var), ref.value(row, bench, var)
            if yours is None and paper is None:
                continue
            scale = yours_scale if yours_scale is not None else paper_scale
            behind = None if published is None else published.entry(row, bench, var)
            entries.append(ReferenceEntry(row, bench, var, yours, None if paper is None else paper * factor, scale, behind))
    shown = [r for e in entries if e.yours is not None for r in e.yours.runs]
    judges: dict[str, list[str]] = {}
    for r in shown:
        labels = judges.setdefault(r.benchmark, [])
        if _judge_label(r) not in labels:
            labels.append(_judge_label(r))
    models = sorted({r.model for r in shown})
    return ReferenceView(ref, benchmarks, entries, models, judges, converted, budget_notes(m), published)


def paper_matrix(ref: ReferenceTable) -> Matrix | None:
    """A reference's per-question scores as a matrix of their own, so the paper's numbers get intervals and paired
    comparisons computed exactly as yours are; None for a reference without per-question scores."""
    if not ref.questions:
        return None
    methods = {name: key for key, name in VARIANTS.items()}
    rows: list[ScoreRow] = []
    lookup: dict[str, dict[str, float]] = {}
    for (row, bench, var), values in ref.questions.items():
        method, layout = ("base", "") if row == BASE_ROW else methods.get(var, (var.lower(), ""))
        subject = f"{ref.name}:{row}:{bench}:{var}"
        lookup[subject] = dict(values)
        interval = score_interval(list(values.values()), binary=False)
        rows.append(
            ScoreRow(
                subject, bench, ref.judge_for(bench), method, layout, "" if row == BASE_ROW else row, ref.model,
                sum(values.values()) / len(values), ref.scale(bench) or 10.0, len(values), 0, f"published by {ref.source}",
                ci_low=None if interval is None else interval.low, ci_high=None if interval is None else interval.high,
                ci_note="" if interval is None else interval.method,
            )
        )  # fmt: skip
    return build_matrix(rows, questions=lambda r: lookup[r.subject])


def _signed(value: float, scale: float | None) -> str:
    return f"{value:+.1f}" if scale is not None and scale >= 100 else f"{value:+.2f}"


def _reference_texts(e: ReferenceEntry) -> tuple[str, str, str]:
    """(yours with its interval, paper, difference), '-' where a side has no value."""
    yours = entry_text(e.yours) or MISSING
    paper = MISSING if e.paper is None else f"{e.paper:.2f}" + ("" if e.paper_entry is None else _interval_suffix(e.paper_entry))
    diff = MISSING if e.difference is None else _signed(e.difference, e.scale)
    return yours, paper, diff


def _bench_title(view: ReferenceView, bench: str) -> str:
    scale = next((e.scale for e in view.rows(bench) if e.scale is not None), None)
    return bench if scale is None else f"{bench} (/{scale:g})"


REFERENCE_HEADER = ("aggregator", "variant", "yours [95% interval]", "paper", "difference")


PAPER_TESTS_TITLE = "the paper's own paired comparisons, from its per-question scores (Holm over its table; bold: significant)"


def paper_comparisons(view: ReferenceView, bench: str) -> tuple[list[str], list[tuple[str, list[tuple[str, bool]]]]]:
    """The paper's comparisons on one benchmark as a small table: the comparisons as columns, one row per
    aggregator, each cell ``(text, significant)`` as ``+0.48 (p 0.008)``; empty where the reference has none."""
    if view.paper is None:
        return [], []
    found = [c for c in comparison_rows(view.paper) if c["benchmark"] == bench]
    columns = list(dict.fromkeys(c["comparison"] for c in found))
    by_row: dict[str, dict[str, dict[str, Any]]] = {}
    for c in found:
        by_row.setdefault(c["aggregator"], {})[c["comparison"]] = c
    rows = []
    for row in sorted(by_row, key=_row_order):
        cells = [by_row[row].get(col) for col in columns]
        rows.append(
            (
                row,
                [
                    ("", False) if c is None else (f"{c['difference']:+.2f} (p {c['p_holm']:.3f})", c["significant"])
                    for c in cells
                ],
            )
        )
    return columns, rows


def reference_markdown(view: ReferenceView) -> str:
    out = [f"fedbench leaderboard beside {view.reference.name}: yours [95% interval] | paper | difference (yours - paper)", ""]
    out += [f"- {line}" for line in view.caption()]
    for bench in view.benchmarks:
        out += ["", f"**{_bench_title(view, bench)}**", ""]
        out += ["| " + " | ".join(REFERENCE_HEADER) + " |", "|" + "---|" * len(REFERENCE_HEADER)]
        for e in view.rows(bench):
            out.append("| " + " | ".join((e.row, e.variant or "base", *_reference_texts(e))) + " |")
        columns, rows = paper_comparisons(view, bench)
        if rows:
            out += [
                "",
                f"{PAPER_TESTS_TITLE}:",
                "",
                "| aggregator | " + " | ".join(columns) + " |",
                "|" + "---|" * (len(columns) + 1),
            ]
            out += ["| " + " | ".join([row] + [f"**{t}**" if sig else t for t, sig in cells]) + " |" for row, cells in rows]
    return "\n".join(out) + f"\n\n{REFERENCE_LEGEND}\n"


def reference_rich(view: ReferenceView):  # noqa: ANN201 - rich is imported lazily
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    tables = []
    for bench in view.benchmarks:
        table = Table(title=f"[bold]{escape(_bench_title(view, bench))}[/]", title_justify="left")
        for col in REFERENCE_HEADER:
            table.add_column(col, justify="left" if col in ("aggregator", "variant") else "right")
        for e in view.rows(bench):
            table.add_row(e.row, e.variant or "base", *(escape(t) for t in _reference_texts(e)))
        tables.append(table)
        columns, rows = paper_comparisons(view, bench)
        if rows:
            tests = Table(title=f"{escape(bench)}: {PAPER_TESTS_TITLE}", title_justify="left")
            for col in ["aggregator", *columns]:
                tests.add_column(col, justify="left" if col == "aggregator" else "right")
            for row, cells in rows:
                tests.add_row(row, *(f"[bold]{escape(t)}[/]" if sig else escape(t) for t, sig in cells))
            tables.append(tests)
    return Group(
        Text(f"fedbench leaderboard beside {view.reference.name}: yours [95% interval] | paper | difference", style="bold"),
        *(Text(line) for line in view.caption()),
        *tables,
        Text(REFERENCE_LEGEND, style="dim"),
    )


def _reference_record(view: ReferenceView, e: ReferenceEntry) -> dict[str, Any]:
    y = e.yours
    return {
        "benchmark": e.benchmark,
        "aggregator": e.row,
        "variant": e.variant or None,
        "scale": e.scale,
        "yours": e.score,
        "ci_low": None if y is None else y.ci_low,
        "ci_high": None if y is None else y.ci_high,
        "ci_note": None if y is None else y.ci_note,
        "n": None if y is None else y.n,
        "seeds": None if y is None else list(y.seeds),
        "paper": e.paper,
        "paper_ci_low": None if e.paper_entry is None else e.paper_entry.ci_low,
        "paper_ci_high": None if e.paper_entry is None else e.paper_entry.ci_high,
        "difference": e.difference,
        "paper_in_interval": e.paper_in_interval,
        "your_model": None if y is None else y.latest.model,
        "your_judge": None if y is None else _judge_label(y.latest),
        "paper_model": None if e.paper is None else view.reference.model,
        "paper_judge": None if e.paper is None else view.reference.judge_for(e.benchmark),
    }


def reference_json(view: ReferenceView) -> str:
    ref = view.reference
    return json.dumps(
        {
            "reference": {
                "name": ref.name,
                "source": ref.source,
                "model": ref.model,
                "judge": ref.judge,
                "judges": {b: ref.judge_for(b) for b in view.benchmarks if any(e.paper is not None for e in view.rows(b))},
                "scales": dict(ref.scales),
            },
            "yours": {"models": view.models, "judges": view.judges},
            "caption": view.caption(),
            "legend": REFERENCE_LEGEND,
            "entries": [_reference_record(view, e) for e in view.entries],
            "paper_comparisons": [] if view.paper is None else comparison_rows(view.paper),
            "paper_test": None if view.paper is None else TEST,
        },
        indent=2,
    )


def reference_csv(view: ReferenceView) -> str:
    """One line per entry, long form; a side without a value is empty (never zero), as in the main table's CSV."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    columns = ["benchmark", "aggregator", "variant", "scale", "yours", "yours_lo", "yours_hi", "paper", "difference"]
    columns += ["paper_in_interval", "your_model", "your_judge", "paper_model", "paper_judge"]
    writer.writerow(columns)
    for e in view.entries:
        r = _reference_record(view, e)
        writer.writerow(
            [
                e.benchmark,
                e.row,
                e.variant or "base",
                "" if e.scale is None else f"{e.scale:g}",
                _fmt(e.score, e.scale or 10.0),
                _fmt(r["ci_low"], e.scale or 10.0),
                _fmt(r["ci_high"], e.scale or 10.0),
                "" if e.paper is None else f"{e.paper:.2f}",
                "" if e.difference is None else _signed(e.difference, e.scale),
                "" if e.paper_in_interval is None else str(e.paper_in_interval).lower(),
                r["your_model"] or "",
                r["your_judge"] or "",
                r["paper_model"] or "",
                r["paper_judge"] or "",
            ]
        )
    return buf.getvalue()


def html_table(m: Matrix) -> str:
    """The study's table as one ``<table id="leaderboard">`` element: the page of :func:`to_html` and the report's
    table (``harness/report.py``, which adds sorting and hiding around it) are the same markup."""
    head1 = "".join(f'<th colspan="{len(m.variants)}">{html.escape(b)}</th>' for b in m.benchmarks)
    head2 = "".join(f"<th>{html.escape(v)}</th>" for _ in m.benchmarks for v in m.variants)
    rows = []
    for row in m.rows:
        tds = []
        for b in m.benchmarks:
            for v in m.variants:
                e = m.entry(row, b, v)
                mark = m.mark(row, b, v)
                cls = f' class="{mark}"' if mark else (' class="empty"' if e is None or e.score is None else "")
                title = ""
                if e is not None and e.ci_low is not None and e.ci_high is not None:
                    title = f' title="95% interval [{_fmt(e.ci_low, e.scale)}, {_fmt(e.ci_high, e.scale)}], n={e.n}"'
                text = html.escape(entry_text(e) + (" (tie)" if mark == "tie" else ""))
                tds.append(f'<td{cls}{title} data-bench="{html.escape(b)}" data-variant="{html.escape(v)}">{text}</td>')
        rows.append(f'<tr><th scope="row">{html.escape(row)}</th>{"".join(tds)}</tr>')
    return (
        f'<table id="leaderboard"><thead><tr><th rowspan="2">aggregator</th>{head1}</tr><tr>{head2}</tr></thead>'
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def to_html(m: Matrix) -> str:
    """A self-contained page with the table alone (``fedbench report`` writes the full results page)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>fedbench leaderboard</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #bbb; padding: .3rem .6rem; text-align: right; }}
thead th {{ background: #eef; text-align: center; }}
td.best {{ font-weight: bold; background: #dfd; }}
td.tie {{ background: #ffd; }}
td.empty {{ background: #f6f6f6; }}
</style></head><body>
<h1>fedbench leaderboard</h1>
{html_table(m)}
<p>Empty: not run. Scores: judge /10 (mt_bench_1, vicuna), % /100 (advbench harmless, preference accuracy).</p>
<p>{html.escape(LEGEND)}</p>
</body></html>
"""


def plot(m: Matrix, path: Path) -> None:
    """Grouped bars with 95% error bars, one panel per benchmark: aggregators on x, a bar per variant, Base as a
    dashed line; below them, where scores are per client, one strip of client scores per cell."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    aggs = [r for r in m.rows if r != BASE_ROW]
    views = client_views(m)
    panels = max(1, len(m.benchmarks))
    fig, axes = plt.subplots(2 if views else 1, panels, figsize=(5 * panels, 8 if views else 4), squeeze=False)
    width = 0.8 / max(1, len(m.variants))
    for ax, bench in zip(axes[0], m.benchmarks):
        for k, var in enumerate(m.variants):
            shown = [
                (i, e, s) for i, a in enumerate(aggs) if (e := m.entry(a, bench, var)) is not None and (s := e.score) is not None
            ]
            xs = [i + k * width for i, _, _ in shown]
            ys = [s for _, _, s in shown]
            err = [
                [s - e.ci_low if e.ci_low is not None else 0 for _, e, s in shown],
                [e.ci_high - s if e.ci_high is not None else 0 for _, e, s in shown],
            ]
            ax.bar(xs, ys, width, yerr=err, capsize=3, label=var)
        base = m.value(BASE_ROW, bench, "")
        if base is not None:
            ax.axhline(base, color="black", linestyle="--", linewidth=1, label="Base")
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(aggs))], aggs, rotation=30)
        ax.set_title(bench)
        ax.set_ylim(0, next(e.scale for (_, b, _), e in m.cells.items() if b == bench))
        ax.legend(fontsize=8)
    if views:
        for ax, bench in zip(axes[1], m.benchmarks):
            mine = [v for v in views if v.benchmark == bench]
            for i, v in enumerate(mine):
                values = list(v.scores.values())
                ax.scatter([i] * len(values), values, s=12, alpha=0.6)
                ax.boxplot([values], positions=[i], widths=0.5, showfliers=False)
            ax.set_xticks(range(len(mine)), [v.cell for v in mine], rotation=30)
            ax.set_title(f"{bench}: per client" if mine else "")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def to_rich(m: Matrix):  # noqa: ANN201 - rich is imported lazily
    """For the terminal: one table per benchmark (aggregators x DPO/KTOO/KTOR, Base last), so the study's
    15 columns stay readable in 80; best (separated) in bold green, ties in yellow, the legend once below."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    tables = []
    for b in m.benchmarks:
        table = Table(title=f"[bold]{escape(b)}[/]", title_justify="left")
        table.add_column("aggregator", style="bold")
        for v in m.variants:
            table.add_column(v, justify="right")
        for row in m.rows:
            cells = []
            for v in m.variants:
                mark = m.mark(row, b, v)
                text = escape(entry_text(m.entry(row, b, v)) + MARKS[mark])
                cells.append({"best": f"[bold green]{text}[/]", "tie": f"[yellow]{text}[/]"}.get(mark, text))
            table.add_row(row, *cells, end_section=row != BASE_ROW and m.rows[-1] == BASE_ROW and row == m.rows[-2])
        tables.append(table)
    unequal = [Text(f"unequal budgets, {row}: {note}", style="yellow") for row, note in budget_notes(m).items()]
    return Group(
        Text("fedbench leaderboard: 95% intervals; * best, separated; ~ tie", style="bold"),
        *tables,
        *unequal,
        Text(LEGEND, style="dim"),
    )


@dataclass(frozen=True)
class ResourceRow:
    """What one finished cell cost: communication after its codec, privacy spent, training time, memory."""

    cell: str
    seed: int
    codec: str
    rounds: int
    bytes_down: int
    bytes_up: int
    """Totals over all rounds; per round: divide by ``rounds``."""
    epsilon: float | None
    """Client-level DP spent over the run (at ``delta``); None without ``[privacy]``."""
    delta: float | None
    train_seconds_per_client_round: float | None
    peak_rss_mib: float | None
    """The training process's peak resident memory (cells it trained before included); None for Flower runs."""
    peak_gpu_mib: float | None

    @property
    def per_round(self) -> tuple[float, float]:
        return self.bytes_down / max(1, self.rounds), self.bytes_up / max(1, self.rounds)


def resource_rows(runs_root: Path) -> list[ResourceRow]:
    """One row per finished cell in a runs folder, read from its ``result.json`` (no store needed)."""
    from fedbench.harness.checkpoint import RunDir, scan_runs

    rows = []
    for state in scan_runs(runs_root):
        result = RunDir.at(state.path).result() if state.status == "done" else None
        if result is None:
            continue
        spec, history = result.spec, result.history
        client_rounds = sum(len(h.client_loss) for h in history)
        privacy, memory = dict(result.privacy), dict(result.memory or {})
        down, up = result.traffic
        rows.append(
            ResourceRow(
                spec.cell + (f"@{spec.seed}" if spec.seed else "") + (f" [{spec.tag}]" if spec.tag else ""),
                spec.seed,
                spec.codec,
                len(history),
                down,
                up,
                privacy.get("epsilon"),
                privacy.get("delta"),
                sum(h.train_seconds for h in history) / client_rounds if client_rounds else None,
                memory.get("peak_rss_mib"),
                memory.get("peak_gpu_mib"),
            )
        )
    return sorted(rows, key=lambda r: r.cell)


RESOURCES_TITLE = "resources per cell: communication (bytes after the codec), privacy spent, training time, peak memory"


def _mb(value: float) -> str:
    return f"{value / 1e6:.3f}"


def _cells(r: ResourceRow) -> list[str]:
    down, up = r.per_round
    return [
        r.cell,
        r.codec,
        _mb(down),
        _mb(up),
        _mb(r.bytes_down),
        _mb(r.bytes_up),
        "" if r.epsilon is None else f"{r.epsilon:.2f} (delta {r.delta:g})",
        "" if r.train_seconds_per_client_round is None else f"{r.train_seconds_per_client_round:.2f}",
        "" if r.peak_rss_mib is None else f"{r.peak_rss_mib:.0f}",
        "" if r.peak_gpu_mib is None else f"{r.peak_gpu_mib:.0f}",
    ]


RESOURCE_COLUMNS = (
    "cell",
    "codec",
    "down MB/round",
    "up MB/round",
    "down MB",
    "up MB",
    "epsilon",
    "train s/client-round",
    "peak RSS MiB",
    "peak GPU MiB",
)


def resources_rich(rows: Sequence[ResourceRow]):  # noqa: ANN201 - rich is imported lazily
    from rich.table import Table

    table = Table(title=RESOURCES_TITLE)
    for col in RESOURCE_COLUMNS:
        table.add_column(col, justify="left" if col in ("cell", "codec") else "right")
    for r in rows:
        table.add_row(*_cells(r))
    return table


def resources_markdown(rows: Sequence[ResourceRow]) -> str:
    lines = ["| " + " | ".join(RESOURCE_COLUMNS) + " |", "|" + "---|" * len(RESOURCE_COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return "\n".join(lines) + f"\n\n{RESOURCES_TITLE}\n"


def resources_csv(rows: Sequence[ResourceRow]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[f.name for f in fields(ResourceRow)])
    writer.writeheader()
    writer.writerows(asdict(r) for r in rows)
    return buf.getvalue()


def resources_json(rows: Sequence[ResourceRow]) -> str:
    return json.dumps(
        {"resources": [asdict(r) | {"bytes_down_per_round": r.per_round[0], "bytes_up_per_round": r.per_round[1]} for r in rows]},
        indent=2,
    )


def length_rows(m: Matrix) -> list[tuple[str, str, float]]:
    """(cell, benchmark, mean answer length in tokens): judges favour long answers, so lengths sit beside scores."""
    return [
        ("base" if row == BASE_ROW else f"{var} {row}", bench, e.answer_tokens)
        for (row, bench, var), e in sorted(m.cells.items())
        if e.answer_tokens is not None
    ]
