"""Evaluation: answer every benchmark with the base model and each trained adapter, judge, store.

Subjects are evaluated one after another, benchmark by benchmark; answers and judgments go to the
store as each batch finishes, so an interrupted evaluation redoes only the missing questions. The
base model is one subject per (model, template), shared by every cell trained from it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedbench.harness.checkpoint import RunDir, atomic_write_text
from fedbench.harness.errors import FedbenchError
from fedbench.harness.generation import GenerationSettings, Generator, make_generator
from fedbench.harness.interfaces import Benchmark, Judge, Judgment, Question
from fedbench.harness.registry import Registry
from fedbench.harness.spec import spec_from_dict
from fedbench.harness.store import ScoreRow, Store

BASE = "base"


@dataclass(frozen=True)
class EvalSpec:
    """How to evaluate: which benchmarks, which judges, which backend, how many questions."""

    benchmarks: tuple[str, ...] = ("mt_bench_1", "vicuna", "advbench")
    judge: str | None = None
    """Judge for benchmarks graded by a model (None: each benchmark's default); rule-based ones keep theirs."""
    judge_params: tuple[tuple[str, Any], ...] = ()
    backend: str = "auto"
    limit: int | None = None
    max_new_tokens: int = 128
    batch_size: int = 16
    sources: tuple[tuple[str, str], ...] = ()
    """benchmark name -> question file or hub id (default: the built-in sample set)."""
    judge_mode: str = "single"
    """'single': each answer graded alone; 'together': a judge with multi-answer grading (judgelm) scores
    the DPO, KTOO and KTOR answers of one aggregator in one prompt, as the study did."""


@dataclass(frozen=True)
class Subject:
    """A model to evaluate: the base model, or a cell's trained adapter."""

    key: str
    model: str
    template: str
    dtype: str
    adapter: Path | None = None
    method: str = BASE
    layout: str = ""
    aggregator: str = ""
    traffic: tuple[int, int] | None = None


def base_subject(model: str, template: str, dtype: str) -> Subject:
    """The untrained model as a subject, keyed by what shapes its answers, shared by all its cells."""
    digest = hashlib.sha256(f"{model}|{template}|{dtype}".encode()).hexdigest()[:12]
    return Subject(f"{BASE}-{digest}", model, template, dtype)


def cell_subject(run_dir: Path) -> Subject:
    """A finished cell's run directory as a subject; refuses an unfinished one."""
    result_file = run_dir / "result.json"
    if not result_file.is_file():
        raise FedbenchError(f"{run_dir} has not finished training", "rerun `fedbench run` with the same settings to finish it first")
    result = json.loads(result_file.read_text())
    spec = spec_from_dict(result["spec"])
    down = sum(h.get("bytes_down", 0) for h in result["history"])
    up = sum(h.get("bytes_up", 0) for h in result["history"])
    return Subject(spec.hash, spec.model, spec.template, spec.dtype, RunDir(run_dir.parent, spec).adapter_dir,
                   spec.method, spec.layout, spec.aggregator, (down, up))


@dataclass
class EvalProgress:
    """Callbacks for progress reporting; all optional."""

    on_start: Callable[[Subject, str, int], None] | None = None
    on_answers: Callable[[int], None] | None = None
    on_score: Callable[[Subject, str, ScoreRow], None] | None = None
    generators: dict[tuple[str, str, str], Generator] = field(default_factory=dict)


def pick_judge(registry: Registry, benchmark: Benchmark, spec: EvalSpec) -> tuple[str, Judge]:
    """The benchmark's judge: ``spec.judge`` unless the benchmark fixes its own (a rule-based score)."""
    name = benchmark.default_judge
    if spec.judge and not benchmark.judge_fixed:
        name = spec.judge
    params = dict(spec.judge_params) if name == spec.judge else {}
    return name, registry.create("judge", name, params)


def evaluate(subjects: Sequence[Subject], spec: EvalSpec, registry: Registry, store: Store, progress: EvalProgress | None = None) -> list[ScoreRow]:
    """Answer, judge and score every subject on every benchmark; returns the score rows written."""
    progress = progress or EvalProgress()
    benchmarks = [registry.create("benchmark", name) for name in spec.benchmarks]
    judges = {b.name: pick_judge(registry, b, spec) for b in benchmarks}
    sources = dict(spec.sources)
    rows: list[ScoreRow] = []
    deferred: list[tuple[Any, ...]] = []
    for subject in subjects:
        settings = GenerationSettings(spec.max_new_tokens, spec.batch_size, 0, subject.template)
        key = (subject.model, subject.template, subject.dtype)
        if key not in progress.generators:
            progress.generators[key] = make_generator(spec.backend, subject.model, settings, subject.dtype)
        generator = progress.generators[key]
        for bench in benchmarks:
            questions = bench.questions(sources.get(bench.name), spec.limit)
            have = store.answers(subject.key, bench.name)
            todo = [q for q in questions if q.id not in have]
            if progress.on_start:
                progress.on_start(subject, bench.name, len(todo))
            step = max(1, spec.batch_size)
            for start in range(0, len(todo), step):  # store batch by batch: an interruption loses one batch at most
                chunk = todo[start : start + step]
                answers = generator.generate([q.prompt for q in chunk], [bench.temperature(q) for q in chunk], subject.adapter,
                                             on_batch=progress.on_answers)
                store.add_answers(subject.key, bench.name, chunk, answers, asdict(settings) | {"backend": generator.name})
                have.update({q.id: a for q, a in zip(chunk, answers)})
            judge_name, judge = judges[bench.name]
            if spec.judge_mode == "together" and subject.method != BASE and hasattr(judge, "judge_together"):
                deferred.append((subject, bench, questions, have, settings, generator.name))
                continue
            judged = store.judgments(subject.key, bench.name, judge_name)
            missing = [q for q in questions if q.id not in judged]
            for start in range(0, len(missing), step):  # likewise stored as they come
                chunk = missing[start : start + step]
                new = judge.judge(chunk, [have[q.id] for q in chunk])
                store.add_judgments(subject.key, bench.name, judge_name, new)
                judged.update({j.question_id: j for j in new})
            rows.append(_finish(store, progress, subject, bench, judge_name, judge, questions, have, judged, settings, generator.name))
    rows += _judge_together(deferred, judges, store, progress)
    return rows


VARIANT_ORDER = {("dpo", "original"): 0, ("kto", "original"): 1, ("kto", "redistributed"): 2}


def _judge_together(deferred: list[tuple[Any, ...]], judges: dict[str, tuple[str, Judge]], store: Store, progress: EvalProgress) -> list[ScoreRow]:
    """Multi-answer grading as in the study: the cells of one aggregator (DPO, KTOO, KTOR) that answered
    a question are scored in one judge prompt, so their scores share one scale. Stored as '<judge>-together'."""
    groups: dict[tuple[str, str, str], list[tuple[Any, ...]]] = {}
    for item in deferred:
        subject, bench = item[0], item[1]
        groups.setdefault((bench.name, subject.model, subject.aggregator), []).append(item)
    rows = []
    for (bench_name, _, _), items in groups.items():
        items.sort(key=lambda it: (VARIANT_ORDER.get((it[0].method, it[0].layout), 9), it[0].layout))
        base_name, judge = judges[bench_name]
        name = f"{base_name}-together"
        questions = items[0][2]
        judged = [store.judgments(it[0].key, bench_name, name) for it in items]
        for q in questions:
            if all(q.id in j for j in judged):
                continue
            answers = [it[3][q.id] for it in items]
            if len(items) == 1:
                verdicts = judge.judge([q], answers)
            else:
                scores, reply = judge.judge_together(q, answers)
                verdicts = [Judgment(q.id, None if scores is None else scores[i], reply) for i in range(len(items))]
            for it, j, v in zip(items, judged, verdicts):
                store.add_judgments(it[0].key, bench_name, name, [v])
                j[q.id] = v
        for it, j in zip(items, judged):
            subject, bench, qs, have, settings, backend = it
            rows.append(_finish(store, progress, subject, bench, name, judge, qs, have, j, settings, backend))
    return rows


def _finish(
    store: Store, progress: EvalProgress, subject: Subject, bench: Benchmark, judge_name: str, judge: Judge,
    questions: Sequence[Question], have: dict[str, str], judged: dict[str, Judgment], settings: GenerationSettings, backend: str,
) -> ScoreRow:
    """Export the answers, write the score row and report it."""
    verdicts = [judged[q.id] for q in questions]
    export_answers(store.path.parent / subject.key if subject.adapter is None else subject.adapter.parent,
                   bench.name, questions, have, verdicts, asdict(settings) | {"backend": backend, "judge": judge_name})
    row = ScoreRow(
        subject=subject.key, benchmark=bench.name, judge=judge_name, method=subject.method,
        layout=subject.layout, aggregator=subject.aggregator, model=subject.model,
        score=bench.aggregate(verdicts), scale=bench.scale, n=len(verdicts),
        failures=sum(v.score is None for v in verdicts), judge_setting=getattr(judge, "setting", judge_name),
        bytes_down=subject.traffic[0] if subject.traffic else None,
        bytes_up=subject.traffic[1] if subject.traffic else None,
    )
    store.put_score(row)
    if progress.on_score:
        progress.on_score(subject, bench.name, row)
    return row


def export_answers(
    home: Path, benchmark: str, questions: Sequence[Question], answers: dict[str, str], verdicts: Sequence[Judgment], settings: dict[str, Any]
) -> Path:
    """``<home>/answers/<benchmark>.jsonl``: one line per question with answer, score, raw judge reply and settings."""
    lines = [
        json.dumps({"question_id": q.id, "category": q.category, "prompt": q.prompt, "answer": answers[q.id],
                    "score": v.score, "judge_reply": v.raw, "settings": settings}, ensure_ascii=False)
        for q, v in zip(questions, verdicts)
    ]
    path = home / "answers" / f"{benchmark}.jsonl"
    atomic_write_text(path, "\n".join(lines) + "\n")
    return path


def eval_spec(profile_eval: dict[str, Any] | None, overrides: dict[str, Any]) -> EvalSpec:
    """EvalSpec from a profile's [eval] table and command-line flags (None = not given), keys checked."""
    from fedbench.harness.errors import did_you_mean

    known = EvalSpec.__dataclass_fields__
    merged: dict[str, Any] = {}
    for origin, values in (("profile eval", profile_eval or {}), ("command line", overrides)):
        for key, value in values.items():
            if value is None:
                continue
            if key not in known:
                raise FedbenchError(f"{origin}: unknown eval setting '{key}'.{did_you_mean(key, known)}", f"known: {', '.join(known)}")
            if key in ("judge_params", "sources"):
                value = tuple(sorted(dict(value).items()))
            elif key == "benchmarks":
                value = tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else tuple(value)
            merged[key] = value
    return EvalSpec(**merged)
