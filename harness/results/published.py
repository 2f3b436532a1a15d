"""Published results beside your own (``leaderboard --reference``): a published table, and your entries set beside it.

The study's Table 1 ships with fedbench as reference data.

A reference table is a CSV with the columns ``aggregator,benchmark,variant,score`` (extra columns are
ignored), one row per published number, and ``#`` comments. A comment of the form ``# key: value``
with one of these keys describes the table (keys are case-insensitive, every one is optional):

- ``source``: where the numbers come from;
- ``model``: the base model the numbers were produced with;
- ``judge``: the judge that graded them, ``judge.<benchmark>`` where one benchmark used another;
- ``scale.<benchmark>``: the benchmark's scale (10 for a judge score /10, 100 for a percentage), so
  a number published on another scale than fedbench's is converted before it is compared.

Names are read in fedbench's spelling, whatever the paper's: aggregators lower-cased (``FedAvg`` is
``fedavg``), ``Base`` (any case) is the untrained base model, whose variant is ``base`` or empty;
benchmarks lower-cased with ``-`` and spaces as ``_`` (``MT-Bench-1`` is ``mt_bench_1``); the
variants ``DPO``, ``KTOO`` and ``KTOR`` in any case.

``load_reference("study")`` loads the built-in table; a path to a CSV of the same form loads that,
so a user can compare with another paper. :func:`reference_view` sets your matrix beside a table, and
:func:`paper_matrix` gives a table with per-question scores intervals and paired tests of its own.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from fedbench.harness.errors import FedbenchError, did_you_mean
from fedbench.harness.results.model import Entry, Matrix, budget_notes, build_matrix
from fedbench.harness.stats import score_interval
from fedbench.harness.store import ScoreRow
from fedbench.harness.study_table import AGGREGATOR_ORDER, BASE, BASE_ROW, VARIANTS, benchmark_rank

BUILTIN = {"study": "study_table1.csv", "study_scores": "study_scores.csv", "study_run_names": "study_run_names.csv"}
"""Built-in reference data by name: files in ``fedbench/plugins/reference/``, shipped as package data. ``study`` is
the published table; ``study_scores`` its per-question judge scores and ``study_run_names`` the run name of every
judged answer set, transcribed from the study's published judgment files (figures only)."""
COLUMNS = ("aggregator", "benchmark", "variant", "score")
NOT_STATED = "not stated"
_META = ("source", "model", "judge")


QuestionKey = tuple[str, str, str]
"""(aggregator, benchmark, variant) as the leaderboard names entries; the base model under (BASE_ROW, benchmark, "")."""


@dataclass(frozen=True)
class ReferenceTable:
    """Published scores keyed as the leaderboard names its entries: ``(aggregator, benchmark, variant)``,
    with the base model under ``(BASE_ROW, benchmark, "")``."""

    name: str
    """``study`` or the path the table was read from."""
    source: str
    model: str
    judge: str
    scores: Mapping[tuple[str, str, str], float]
    judges: Mapping[str, str] = field(default_factory=dict)
    """Benchmark -> judge, where a benchmark was not graded by ``judge``."""
    scales: Mapping[str, float] = field(default_factory=dict)
    """Benchmark -> the scale its published numbers are on, where the table states it."""
    questions: Mapping[QuestionKey, Mapping[str, float]] = field(default_factory=dict)
    """Per-question scores behind the published numbers, where they are known (the built-in ``study``: its judge's
    scores by the study's own parse rule): they give the paper's numbers intervals and paired tests."""

    def value(self, row: str, benchmark: str, variant: str) -> float | None:
        return self.scores.get((row, benchmark, "" if row == BASE_ROW else variant))

    def judge_for(self, benchmark: str) -> str:
        return self.judges.get(benchmark, self.judge)

    def scale(self, benchmark: str) -> float | None:
        return self.scales.get(benchmark)

    @property
    def benchmarks(self) -> list[str]:
        return sorted({b for _, b, _ in self.scores})


def builtin_path(name: str) -> Path:
    import fedbench.plugins

    return Path(fedbench.plugins.__file__).resolve().parent / "reference" / BUILTIN[name]


def load_reference(name: str) -> ReferenceTable:
    """A built-in table by name (``study``) or a reference CSV by path."""
    if name in BUILTIN:
        path = builtin_path(name)
        if not path.is_file():
            raise FedbenchError(
                f"fedbench's reference table '{name}' ({path}) is missing: this installation of fedbench is incomplete",
                "reinstall fedbench; when building it yourself, keep plugins/reference/*.csv as package data of fedbench.plugins",
            )
        table = parse_reference(path.read_text(encoding="utf-8"), name)
        return replace(table, questions=study_questions()) if name == "study" else table
    path = Path(name).expanduser()
    if path.is_file():
        try:
            text = path.read_text(encoding="utf-8-sig")  # -sig: a spreadsheet's byte-order mark is not a header
        except (OSError, UnicodeDecodeError) as err:
            raise FedbenchError(f"cannot read reference table {path}: {err}", "give a UTF-8 CSV file") from err
        return parse_reference(text, str(path))
    looks_like_path = path.suffix != "" or "/" in name or "\\" in name
    raise FedbenchError(
        f"reference table {path} not found"
        if looks_like_path
        else f"unknown reference table '{name}'.{did_you_mean(name, BUILTIN)}",
        f"use a built-in name ({', '.join(sorted(BUILTIN))}) or a path to a CSV with the columns {','.join(COLUMNS)}",
    )


def _benchmark(text: str) -> str:
    return text.strip().lower().replace("-", "_").replace(" ", "_")


def _variant(text: str) -> str:
    canonical = {v.lower(): v for v in VARIANTS.values()}
    return canonical.get(text.strip().lower(), text.strip())


def parse_reference(text: str, name: str) -> ReferenceTable:
    """Parse a reference CSV; every problem names the file and line it is on."""

    def bad(line: int, problem: str, fix: str) -> FedbenchError:
        return FedbenchError(f"{name}, line {line}: {problem}", fix)

    meta: dict[str, str] = {}
    judges: dict[str, str] = {}
    scales: dict[str, float] = {}
    scale_lines: dict[str, int] = {}
    rows: dict[tuple[str, str, str], tuple[float, int, str]] = {}  # key -> (score, line, score as written)
    header: dict[str, int] | None = None
    width = 0
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("#"):
            key, sep, value = line.lstrip("#").partition(":")
            key, value = key.strip().lower(), value.strip()
            if not sep or not value:
                continue
            if key in _META:
                meta[key] = value
            elif key.startswith("judge.") and key != "judge.":
                judges[_benchmark(key.removeprefix("judge."))] = value
            elif key.startswith("scale.") and key != "scale.":
                bench = _benchmark(key.removeprefix("scale."))
                try:
                    scales[bench] = float(value)
                except ValueError:
                    scales[bench] = math.nan
                if not math.isfinite(scales[bench]) or scales[bench] <= 0:
                    raise bad(
                        number, f"scale '{value}' of {bench} is not a positive number", "write e.g. '# scale.advbench: 100'"
                    )
                scale_lines[bench] = number
            continue
        fields = [f.strip() for f in next(csv.reader([raw]))]
        if header is None:
            names = [f.lower() for f in fields]
            missing = [c for c in COLUMNS if c not in names]
            if missing:
                raise bad(
                    number,
                    f"the header '{line}' lacks the column(s) {', '.join(missing)}",
                    f"start the table with the header line '{','.join(COLUMNS)}'",
                )
            header = {c: names.index(c) for c in COLUMNS}
            width = len(names)
            continue
        if len(fields) != width:
            raise bad(number, f"{len(fields)} fields where the header has {width}: '{line}'", f"write {','.join(COLUMNS)}")
        agg, bench, var, value = (fields[header[c]] for c in COLUMNS)
        if not agg or not bench:
            raise bad(number, f"empty aggregator or benchmark: '{line}'", "name both, e.g. 'fedavg,vicuna,DPO,8.03'")
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not math.isfinite(score):
            raise bad(
                number,
                f"score '{value}' is not a number",
                "write the published number, e.g. 8.03 (none published: leave the row out)",
            )
        row, bench = agg.lower(), _benchmark(bench)
        if row == BASE_ROW.lower():
            if var.lower() not in ("", "base"):
                raise bad(number, f"the Base row has variant '{var}'", "give the base model's rows the variant 'base'")
            cell = (BASE_ROW, bench, "")
        else:
            if var.lower() in ("", "base"):
                raise bad(number, f"aggregator '{agg}' has no variant", "name the variant: DPO, KTOO or KTOR")
            cell = (row, bench, _variant(var))
        if cell in rows:
            raise bad(
                number, f"{agg} {bench} {var or 'base'} is already given on line {rows[cell][1]}", "keep one number per entry"
            )
        rows[cell] = (score, number, value)
    if header is None:
        raise FedbenchError(f"{name}: no header line", f"start the table with the header line '{','.join(COLUMNS)}'")
    if not rows:
        raise FedbenchError(f"{name}: the table has a header but no rows", "add one row per published number")
    for (_, bench, _), (score, number, value) in rows.items():
        top = scales.get(bench)
        if score < 0 or (top is not None and score > top):
            where = f"the '# scale.{bench}' line (line {scale_lines[bench]})" if bench in scale_lines else "the number"
            raise bad(
                number,
                f"score {value} is outside {bench}'s scale 0-{top:g}" if top is not None else f"score {value} is negative",
                f"check {where}",
            )
    scores = {key: score for key, (score, _, _) in rows.items()}
    return ReferenceTable(
        name,
        meta.get("source", name),
        meta.get("model", NOT_STATED),
        meta.get("judge", NOT_STATED),
        scores,
        judges,
        scales,
    )


def builtin_rows(name: str) -> list[dict[str, str]]:
    """The rows of a built-in CSV (``#`` comment lines skipped) as dicts by column."""
    text = builtin_path(name).read_text(encoding="utf-8")
    return list(csv.DictReader(line for line in text.splitlines() if not line.startswith("#")))


def study_questions() -> dict[QuestionKey, dict[str, float]]:
    """The study's per-question JudgeLM-13B scores behind Table 1, by entry: each aggregator's variants from the file
    that judged them together, the base model from the file that judged it beside FedAvg's DPO and KTOO (the
    only context the base model was judged in). A reply the study's rule skipped has no score."""
    out: dict[QuestionKey, dict[str, float]] = {}
    for row in builtin_rows("study_scores"):
        context, bench = row["judged_together"], row["benchmark"]
        for i in (1, 2, 3):
            role, score = row[f"answer{i}"], row[f"score{i}"]
            if context == "base-triple" and role != "base":
                continue  # FedAvg's answers beside the base model: another judging context than its own row's
            key = (BASE_ROW, bench, "") if role == "base" else (context, bench, _variant(role))
            if score:
                out.setdefault(key, {})[row["question_id"]] = float(score)
    return out


# --- your entries beside a published table (--reference) ---------------------------------------------------


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
        key=benchmark_rank,
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
        method, layout = (BASE, "") if row == BASE_ROW else methods.get(var, (var.lower(), ""))
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


def reference_record(view: ReferenceView, e: ReferenceEntry) -> dict[str, Any]:
    """One entry beside its published value as a record (the JSON's, and the CSV's source): both sides' numbers,
    models and judges."""
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
