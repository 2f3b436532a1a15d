"""Published results to set beside your own: the study's Table 1 ships with fedbench as reference data.

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
so a user can compare with another paper.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from fedbench.harness.errors import FedbenchError, did_you_mean
from fedbench.harness.leaderboard import BASE_ROW, VARIANTS

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
