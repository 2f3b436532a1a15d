"""Published judgments into a runs folder: another study's answers and its judge's replies, re-read by fedbench.

The KTO-vs-DPO study published, per aggregator and benchmark, one JSONL file in which JudgeLM judged
several answers to each question in one prompt (OpenFedLLM's multi-answer judging). Each line holds
``question_id``, ``question_body``, ``answer{i}_body`` and ``answer{i}_model_id`` for i = 1..k (k >= 2;
``answer{i}_metadata`` read past), ``pred_text`` (the judge's reply) and ``pred_model_id``; ``tstamp``
optional. Importing such a file stores every answer set as an ordinary subject (its answers, one
judgment per question under the judge's parse rule, its score row with the usual interval), so every
view works on it unchanged: the leaderboard in all formats, ``--compare``, ``--reference``, the
report, and ``fedbench eval``, which judges the stored answers again with another judge.

Who wrote an answer is read from its model id: OpenFedLLM's run names
(``{data}_{pairs}_{aggregator}_{method}[_dist]_c{clients}s{sampled}_i{max_steps}_b{batch}a{accum}_l{length}_r{r}a{alpha}_{time}_{round}``,
``kto_dist`` being the redistributed layout) give the cell and its training budget; ``--map ID=agg/method/layout``
names any other id, and the base model's id (``alpaca-native`` unless ``--base``) is the untrained model.

Judging context. A score from together-judging depends on the other answers in the prompt (the study's
FedAvg KTOO answers score 8.14 beside DPO and KTOR, 7.75 beside the base model and DPO). A file that
judges the variants of one aggregator is that aggregator's own context: its rows are the aggregator's
rows. Any other file (one holding the base model, or several aggregators) is a context of its own: its
judge is named for it (``judgelm-together@base+DPO+KTOO``) and its trained rows carry the tag
``judged together: base, DPO, KTOO``, so they stand on a row of their own and are never pooled with the
aggregator's own context. Every file is imported in one transaction; importing it again rewrites the same rows.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedbench.harness.errors import FedbenchError, did_you_mean
from fedbench.harness.interfaces import Benchmark, Judge, Judgment, Question
from fedbench.harness.registry import Registry
from fedbench.harness.scoring import EvalProgress, record_score
from fedbench.harness.store import Store
from fedbench.harness.study_table import BASE, variant
from fedbench.harness.subjects import BUDGET_KEYS, Subject

BASE_ID = "alpaca-native"
"""The study's base model id in its judgment files (Alpaca-7B)."""
BENCHMARK_FOLDERS = {"mtbench": "mt_bench_1", "mt_bench": "mt_bench_1", "mt-bench": "mt_bench_1", "mt_bench_1": "mt_bench_1"}
"""Folder names that name a benchmark otherwise (the study's ``data/mtbench/...``); a folder named after a
registered benchmark names that one."""
RUN_NAME = re.compile(
    r"(?P<data>.+?)_(?P<pairs>\d+)_(?P<aggregator>[A-Za-z0-9]+)_(?P<method>[A-Za-z0-9]+?)(?P<dist>_dist)?"
    r"_c(?P<clients>\d+)s(?P<clients_per_round>\d+)_i(?P<local_steps>\d+)_b(?P<batch_size>\d+)a(?P<grad_accum>\d+)"
    r"_l(?P<max_length>\d+)_r(?P<lora_r>\d+)a(?P<lora_alpha>\d+)_(?P<timestamp>\d+)_(?P<rounds>\d+)"
)
"""OpenFedLLM's run name; the round the answers were generated at is the cell's ``rounds``."""
MAP_SYNTAX = "--map MODEL_ID=aggregator/method/layout (e.g. --map my-run=fedavg/kto/redistributed)"
PREFIX = "imported-"


@dataclass(frozen=True)
class AnswerSource:
    """Who wrote an answer set: the base model, or a cell (method, layout, aggregator) with its training budget."""

    model_id: str
    method: str
    layout: str = ""
    aggregator: str = ""
    budget: tuple[tuple[str, Any], ...] = ()

    @property
    def role(self) -> str:
        """``base``, or the study's variant name (``DPO``, ``KTOO``, ``KTOR``)."""
        return BASE if self.method == BASE else variant(self.method, self.layout)

    @property
    def subject(self) -> str:
        """The store's subject key: one per model id, whatever file or benchmark it is imported from."""
        return PREFIX + hashlib.sha256(self.model_id.encode()).hexdigest()[:12]


def parse_map(entries: Sequence[str]) -> dict[str, tuple[str, str, str]]:
    """``ID=aggregator/method/layout`` entries of ``--map``."""
    out: dict[str, tuple[str, str, str]] = {}
    for entry in entries:
        model_id, sep, cell = entry.partition("=")
        parts = cell.split("/")
        if not sep or not model_id.strip() or len(parts) != 3 or not all(p.strip() for p in parts):
            raise FedbenchError(f"--map '{entry}' is not MODEL_ID=aggregator/method/layout", f"write {MAP_SYNTAX}")
        aggregator, method, layout = (p.strip() for p in parts)
        out[model_id.strip()] = (aggregator, method, layout)
    return out


def identify(model_id: str, maps: Mapping[str, tuple[str, str, str]], base_ids: Sequence[str]) -> AnswerSource:
    """The source of an answer set: ``--map`` first, then the base model's id, then an OpenFedLLM run name."""
    if model_id in maps:
        aggregator, method, layout = maps[model_id]
        return AnswerSource(model_id, method, layout, aggregator)
    if model_id in base_ids:
        return AnswerSource(model_id, BASE)
    found = RUN_NAME.fullmatch(model_id)
    if found is None:
        raise FedbenchError(
            f"answer model id '{model_id}' is neither an OpenFedLLM run name nor the base model ({', '.join(base_ids)})",
            f"name its cell with {MAP_SYNTAX}, or mark it as the base model with --base {model_id}",
        )
    fields = found.groupdict()
    budget: tuple[tuple[str, Any], ...] = tuple((key, int(fields[key])) for key in BUDGET_KEYS)
    budget += (("data", f"{fields['data']}_{fields['pairs']}"),)
    layout = "redistributed" if fields["dist"] else "original"
    return AnswerSource(model_id, fields["method"].lower(), layout, fields["aggregator"].lower(), budget)


@dataclass(frozen=True)
class JudgedQuestion:
    """One line of a judgment file: a question, its k answers in prompt order, the judge's reply."""

    question_id: str
    question: str
    answers: tuple[str, ...]
    model_ids: tuple[str, ...]
    reply: str
    judge_model: str
    tstamp: float


def read_judgments(path: Path) -> list[JudgedQuestion]:
    """Every line of a judgment file, checked: a bad line names the file and line number and the fix."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise FedbenchError(f"cannot read judgment file {path}: {err}", "give a UTF-8 JSONL file") from err
    lines: list[JudgedQuestion] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        where = f"{path}, line {number}"
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as err:
            raise FedbenchError(f"{where} is not JSON ({err.msg})", "each line must be one JSON object") from err
        if not isinstance(row, dict):
            raise FedbenchError(f"{where} is not a JSON object", "each line must be one JSON object")
        k = 0
        while f"answer{k + 1}_body" in row or f"answer{k + 1}_model_id" in row:
            k += 1
        missing = [f for f in ("question_id", "question_body", "pred_text") if f not in row]
        missing += [
            f"answer{i}_{part}"
            for i in range(1, max(k, 2) + 1)
            for part in ("body", "model_id")
            if f"answer{i}_{part}" not in row
        ]
        if missing:
            raise FedbenchError(
                f"{where} lacks {', '.join(missing)}",
                "each line needs question_id, question_body, pred_text and answer{i}_body, answer{i}_model_id "
                "for i = 1..k (k >= 2)",
            )
        if lines and k != len(lines[0].answers):
            raise FedbenchError(
                f"{where} holds {k} answers where the file's first line holds {len(lines[0].answers)}",
                "keep one judging context per file: the same number of answers on every line",
            )
        lines.append(
            JudgedQuestion(
                str(row["question_id"]),
                str(row["question_body"]),
                tuple(str(row[f"answer{i}_body"]) for i in range(1, k + 1)),
                tuple(str(row[f"answer{i}_model_id"]) for i in range(1, k + 1)),
                str(row["pred_text"] or ""),
                str(row.get("pred_model_id") or ""),
                float(row.get("tstamp") or 0.0),
            )
        )
    if not lines:
        raise FedbenchError(f"{path} holds no judgments", "give a JSONL file with one judged question per line")
    return lines


def benchmark_of(path: Path, known: Sequence[str]) -> str | None:
    """The benchmark a file's folders name (``.../mtbench/model_judgement/x.jsonl`` is MT-Bench-1), nearest first."""
    for folder in reversed(path.resolve().parent.parts):
        name = folder.lower()
        if name in known:
            return name
        if name in BENCHMARK_FOLDERS:
            return BENCHMARK_FOLDERS[name]
    return None


@dataclass(frozen=True)
class ImportedFile:
    """What one file added: its benchmark, judging context, judge name, answer sets and parse failures."""

    path: Path
    benchmark: str
    judge: str
    context: str
    """'' for an aggregator's own context, else the tag its rows carry."""
    sources: tuple[AnswerSource, ...]
    questions: int
    failures: int
    """Replies the parse rule could not read (stored as failures, never scores)."""


def judging_context(sources: Sequence[AnswerSource]) -> tuple[str, str]:
    """(judge-name suffix, row tag): both empty for one aggregator's variants judged together, else named for the
    answer sets in the prompt, in prompt order."""
    aggregators = {s.aggregator for s in sources if s.method != BASE}
    if len(aggregators) == 1 and all(s.method != BASE for s in sources):
        return "", ""
    mixed = len(aggregators) > 1
    roles = [s.role if s.method == BASE or not mixed else f"{s.aggregator}/{s.role}" for s in sources]
    return "@" + "+".join(roles), "judged together: " + ", ".join(roles)


@dataclass(frozen=True)
class ImportOptions:
    """How to read judgment files: which benchmark, who wrote which answers, which judge's parse rule."""

    benchmark: str | None = None
    """None: from each file's folder names."""
    maps: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)
    """Model id -> (aggregator, method, layout), for ids that are no OpenFedLLM run name (``--map``)."""
    base_ids: tuple[str, ...] = (BASE_ID,)
    judge: str = "judgelm"
    parse: str = "strict"
    """The judge's parse rule: ``strict`` (fedbench's) or ``study`` (the study's own, to recompute its table)."""


@dataclass(frozen=True)
class PreparedFile:
    """A judgment file read, checked and parsed, ready to be written in one transaction."""

    path: Path
    bench: Benchmark
    lines: list[JudgedQuestion]
    sources: tuple[AnswerSource, ...]
    scores: list[list[float] | None]
    judge: str
    setting: str
    tag: str
    base_model: str


def prepare_file(path: Path, registry: Registry, options: ImportOptions) -> PreparedFile:
    """Read and check one file and read its replies with the judge's parse rule; nothing is written."""
    benchmark, judge, parse, base_ids = options.benchmark, options.judge, options.parse, options.base_ids
    lines = read_judgments(path)
    name = benchmark or benchmark_of(path, registry.names("benchmark"))
    if name is None:
        raise FedbenchError(
            f"{path}: no folder on its path names a benchmark", "pass --benchmark mt_bench_1 (or vicuna, or another benchmark)"
        )
    bench: Benchmark = registry.create("benchmark", name, {})
    grader: Judge = registry.create("judge", judge, {"parse": parse} if parse != "strict" else {})
    if not grader.judges_together:
        raise FedbenchError(f"judge '{judge}' does not grade answers together", "import with --judge judgelm")
    known = bench.question_ids
    ids = lines[0].model_ids
    for number, line in enumerate(lines, start=1):
        if known is not None and (not line.question_id.isdigit() or int(line.question_id) not in known):
            raise FedbenchError(
                f"{path}: question_id {line.question_id} (judged question {number}) is not in {name}'s set "
                f"({known.start}-{known.stop - 1})",
                f"import {name}'s judgments only, or name the right benchmark with --benchmark",
            )
        if line.model_ids != ids:
            raise FedbenchError(
                f"{path}: judged question {number} (question {line.question_id}) has answers by {list(line.model_ids)}, "
                f"the first by {list(ids)}",
                "keep one judging context per file: the same models in the same positions on every line",
            )
    if len(set(ids)) != len(ids):
        raise FedbenchError(f"{path}: one model answers in two positions ({list(ids)})", "give each answer set once per line")
    sources = tuple(identify(i, options.maps, base_ids) for i in ids)
    suffix, tag = judging_context(sources)
    judge_name = f"{judge}-together" + ("" if parse == "strict" else f"-{parse}") + suffix
    roles = ", ".join(s.role for s in sources)
    setting = f"model={lines[0].judge_model or 'unknown'}, imported from {path.name}, parse={parse}, judged together: {roles}"
    scores = [grader.read_scores(line.reply, len(sources)) for line in lines]
    return PreparedFile(path, bench, lines, sources, scores, judge_name, setting, tag, base_ids[0])


def write_file(prepared: PreparedFile, store: Store, progress: EvalProgress | None = None) -> ImportedFile:
    """Store a prepared file's answer sets, judgments and score rows in one transaction (all or nothing)."""
    p = prepared
    name = p.bench.name
    questions = [Question(line.question_id, line.question) for line in p.lines]
    origin = f"imported from {p.path.name}"
    created = max(line.tstamp for line in p.lines)  # the judging time: a second import writes the same rows
    with store.transaction():
        for position, source in enumerate(p.sources):
            trained = source.method != BASE
            subject = Subject(
                source.subject, p.base_model if trained else source.model_id, "", "", None, source.method, source.layout,
                source.aggregator, settings_key=source.subject, tag=p.tag if trained else "", budget=source.budget,
                origin=origin,
            )  # fmt: skip
            answers = {line.question_id: line.answers[position] for line in p.lines}
            made = {"backend": "imported", "origin": origin, "model_id": source.model_id}
            store.add_answers(subject.key, name, questions, [answers[q.id] for q in questions], made)
            verdicts = [
                Judgment(line.question_id, None if s is None else s[position], line.reply) for line, s in zip(p.lines, p.scores)
            ]
            store.add_judgments(subject.key, name, p.judge, verdicts)
            store.put_subject(subject.key, origin, dict(source.budget))
            judged = {v.question_id: v for v in verdicts}
            record_score(
                store, progress or EvalProgress(), subject, p.bench, p.judge, p.setting, questions, judged, made, answers,
                created=created,
            )  # fmt: skip
    failures = sum(s is None for s in p.scores)
    return ImportedFile(p.path, name, p.judge, p.tag, p.sources, len(p.lines), failures)


def judgment_files(paths: Sequence[Path]) -> list[Path]:
    """The JSONL files given, folders searched recursively, in a stable order; a missing path is refused."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(path.rglob("*.jsonl"))
        elif path.is_file():
            found.append(path)
        else:
            raise FedbenchError(f"{path} does not exist", "give judgment files (JSONL) or folders holding them")
    if not found:
        raise FedbenchError(f"no .jsonl files in {', '.join(map(str, paths))}", "point at the folder holding the judgment files")
    return found


def import_judgments(
    paths: Sequence[Path], runs_root: Path, registry: Registry, options: ImportOptions | None = None
) -> list[ImportedFile]:
    """Import judgment files (or folders of them) into ``runs_root``'s store, one transaction per file.

    Every file is read and checked before any is written, so a bad file stops the import with nothing of it
    stored; a file already imported is rewritten with the same rows."""
    options = options or ImportOptions()
    names = registry.names("benchmark")
    if options.benchmark is not None and options.benchmark not in names:
        raise FedbenchError(
            f"unknown benchmark '{options.benchmark}'.{did_you_mean(options.benchmark, names)}", f"use one of {', '.join(names)}"
        )
    prepared = [prepare_file(path, registry, options) for path in judgment_files(paths)]
    store = Store.in_runs(runs_root)
    try:
        return [write_file(p, store) for p in prepared]
    finally:
        store.close()
