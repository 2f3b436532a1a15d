"""Evaluation: answer every benchmark with the base model and each trained adapter, judge, store.

Subjects are evaluated one after another, benchmark by benchmark; answers and judgments go to the
store as each batch finishes, so an interrupted evaluation redoes only the missing questions. The
base model is one subject per (model, template), shared by every cell trained from it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from fedbench.harness.baselines import client_adapter_dir
from fedbench.harness.errors import FedbenchError
from fedbench.harness.generation import GenerationSettings, make_generator
from fedbench.harness.grading import JUDGE_CONTEXTS, Deferred, grade_together, judge_head_to_head
from fedbench.harness.hardware import DTYPES, release_freed_memory, resolve_dtype
from fedbench.harness.interfaces import Benchmark, Evaluator, Judge, ModelUnderTest, Question, Request
from fedbench.harness.likelihood import REWARDS, LikelihoodScorer, SequenceLogp
from fedbench.harness.lm_eval_bridge import EVALUATOR, LmEvalEvaluator
from fedbench.harness.registry import Registry
from fedbench.harness.scoring import EvalProgress, question_clients, record_score, score_fields, store_score
from fedbench.harness.store import ScoreRow, Store
from fedbench.harness.study_table import BASE
from fedbench.harness.subjects import Subject


@dataclass(frozen=True)
class EvalSpec:
    """How to evaluate: which benchmarks, which judges, which backend, how many questions."""

    benchmarks: tuple[str, ...] = ("mt_bench_1", "vicuna", "advbench")
    judge: str | None = None
    """Judge for benchmarks graded by a model (None: each benchmark's default); rule-based ones keep theirs. A comma
    list (``llm,judgelm``) grades the same answers with each judge, so ``leaderboard --judge-checks`` can report how
    they agree; each judge's scores are its own rows."""
    judge_params: tuple[tuple[str, Any], ...] = ()
    """Keyword arguments of the judge; with several judges, these go to the first, and a table named after a judge
    (``judge_params = { judgelm = { model = "..." } }``) goes to that judge."""
    backend: str = "auto"
    limit: int | None = None
    """First N questions of each generated benchmark (benchmarks scored on given answers always take all; an
    ``lm_eval:<task>`` benchmark: the first N documents of each lm-eval task, unless it sets its own ``limit``)."""
    max_new_tokens: int | None = None
    """New tokens per answer for every benchmark; None: each benchmark's own (``Benchmark.answer_tokens``, the study's)."""
    batch_size: int = 16
    sources: tuple[tuple[str, str], ...] = ()
    """benchmark name -> question file or hub id (default: the built-in sample set)."""
    benchmark_params: tuple[tuple[str, Any], ...] = ()
    """benchmark name -> its parameters (keyword arguments of the plugin), e.g. {preference = {beta = 0.1}}
    or {"lm_eval:mmlu" = {num_fewshot = 5}}."""
    judge_mode: str = "single"
    """'single': each answer graded alone; 'together': a judge with multi-answer grading (judgelm) scores
    the DPO, KTOO and KTOR answers of one aggregator in one prompt, as the study did."""
    judge_order: str = "rotate"
    """Together-grading's answer order: 'rotate' (each variant in each position equally often, so the judge's
    position bias spreads evenly) or 'fixed' (DPO, KTOO, KTOR on every question, as the study did; its scores are
    stored under '<judge>-together-fixed', apart from rotated ones)."""
    judge_contexts: tuple[str, ...] = ()
    """Together-grading's further contexts, each grading the same answers again: ``alone`` (each answer by itself),
    ``base`` (the base model's answer beside the aggregator's variants) and ``reference`` (the question's reference
    answer beside them, on questions that have one). ``leaderboard --judge-checks`` reports how much a score shifts
    between contexts; the study's answers moved by up to 0.4 points on MT-Bench-1."""
    pairwise: bool = False
    """Also judge every two variants of an aggregator (and the base model) head to head, each question in both
    orders, with a judge that can (``Judge.judge_pair``): win rates, position consistency and first-position bias in
    ``leaderboard --judge-checks``."""
    score_dtype: str = "float32"
    """Precision of likelihood scoring (``Request.LIKELIHOOD`` benchmarks: ``preference``), whatever the cells trained in:
    ``float32``, ``bfloat16`` or ``auto`` (this machine's fast path). A held-out pair is decided by a difference of
    differences of log-probabilities summed over tens of tokens, and its margin is often smaller than bfloat16's
    rounding of those sums (on the demo's DPO cell bfloat16 flipped 3 of 57 pairs). Scoring is forward-only, so float32
    costs little; ``bfloat16`` is for a model whose float32 copy would not fit (a 7B on a small GPU). Every likelihood
    row's judge setting ends with the precision it was scored in."""

    def __post_init__(self) -> None:
        if self.score_dtype not in DTYPES:
            raise FedbenchError(
                f"score_dtype '{self.score_dtype}' is not one of {', '.join(DTYPES)}",
                "set score_dtype = 'float32' (the default), or 'bfloat16' where a float32 copy of the model does not fit",
            )
        unknown = sorted(set(self.judge_contexts) - set(JUDGE_CONTEXTS))
        if unknown:
            raise FedbenchError(
                f"judge_contexts: unknown context {', '.join(map(repr, unknown))}",
                f'use any of {", ".join(JUDGE_CONTEXTS)} (e.g. judge_contexts = ["alone", "base"])',
            )
        if self.judge_contexts and self.judge_mode != "together":
            raise FedbenchError(
                "judge_contexts are further contexts of together-grading, and judge_mode is not 'together'",
                "set judge_mode = 'together' as well, or leave judge_contexts out",
            )
        if self.judge_order not in ("rotate", "fixed"):
            raise FedbenchError(
                f"judge_order '{self.judge_order}' is not rotate or fixed", "set judge_order = 'rotate' or 'fixed'"
            )


def create_benchmark(registry: Registry, name: str, params: Mapping[str, Any]) -> Benchmark:
    """The plugin behind a ``--benchmarks`` entry: ``plugin:task`` (``lm_eval:mmlu``) is the plugin with ``task="mmlu"``.

    So one plugin bridges to every task of another evaluation harness without a registry entry per task;
    its parameters are looked up under the full name, as ``benchmark_params = { "lm_eval:mmlu" = {...} }``.
    """
    plugin, colon, task = name.partition(":")
    return registry.create("benchmark", plugin, ({"task": task} if colon else {}) | dict(params))


def pick_judge(registry: Registry, benchmark: Benchmark, spec: EvalSpec) -> tuple[str, Judge]:
    """The benchmark's (first) judge: ``spec.judge`` unless the benchmark fixes its own (a rule-based score)."""
    return pick_judges(registry, benchmark, spec)[0]


def pick_judges(registry: Registry, benchmark: Benchmark, spec: EvalSpec) -> list[tuple[str, Judge]]:
    """The benchmark's judges: each of ``spec.judge``'s comma list, unless the benchmark fixes its own judge."""
    names = [n.strip() for n in (spec.judge or "").split(",") if n.strip()]
    if not names or benchmark.judge_fixed:
        return [(benchmark.default_judge, registry.create("judge", benchmark.default_judge, {}))]
    given = dict(spec.judge_params)
    own = {n: dict(given.pop(n)) for n in names if isinstance(given.get(n), Mapping)}
    return [(n, registry.create("judge", n, own.get(n, given if i == 0 else {}))) for i, n in enumerate(names)]


@dataclass
class _Scorers:
    """Likelihood scorers per (model, template, dtype), and the base model's log-probs per held-out set.

    ``dtype`` is the evaluation's scoring precision (``EvalSpec.score_dtype``, resolved), never a subject's
    training dtype: a cell trained in bfloat16 is scored by the base model loaded in float32 with the cell's
    adapter in it (fedbench's adapters are float32 even in bfloat16 training, and a bfloat16 tensor would
    upcast exactly), so cells of either training precision share one reference pass per held-out set.
    """

    dtype: str
    scorers: dict[tuple[str, str, str], LikelihoodScorer] = field(default_factory=dict)
    reference: dict[tuple[str, str, str, str], list[list[SequenceLogp]]] = field(default_factory=dict)

    def scorer(self, subject: Subject) -> LikelihoodScorer:
        key = (subject.model, subject.template, self.dtype)
        if key not in self.scorers:
            self.scorers[key] = LikelihoodScorer.load(subject.model, subject.template, self.dtype)
        return self.scorers[key]


@dataclass
class _Evaluation:
    """What every benchmark path of one :func:`evaluate` call shares: its settings, store, progress callbacks,
    judges per benchmark, the answers waiting to be graded together, and the likelihood scorers."""

    spec: EvalSpec
    store: Store
    progress: EvalProgress
    judges: dict[str, list[tuple[str, Judge]]]
    scorers: _Scorers
    deferred: list[Deferred] = field(default_factory=list)
    """Answers waiting to be graded together with their aggregator's other variants."""
    pairs: list[Deferred] = field(default_factory=list)
    """Answers waiting to meet the other variants' (and the base model's) head to head (``pairwise``)."""
    base_answers: dict[tuple[str, str, str], Deferred] = field(default_factory=dict)
    """(benchmark, model, judge) -> the base model's answers: a judging context and a head-to-head opponent."""


def evaluate(
    subjects: Sequence[Subject], spec: EvalSpec, registry: Registry, store: Store, progress: EvalProgress | None = None
) -> list[ScoreRow]:
    """Answer, judge and score every subject on every benchmark; returns the score rows written."""
    progress = progress or EvalProgress()
    benchmarks = [create_benchmark(registry, name, dict(spec.benchmark_params).get(name, {})) for name in spec.benchmarks]
    judges = {b.name: pick_judges(registry, b, spec) for b in benchmarks if b.request is Request.GENERATE}
    run = _Evaluation(spec, store, progress, judges, _Scorers(resolve_dtype(spec.score_dtype)))
    rows: list[ScoreRow] = []
    for subject in subjects:
        if subject.method != BASE:
            store.put_subject(subject.key, subject.origin or "trained", dict(subject.budget))
        for bench in benchmarks:
            if subject.imported:
                if bench.request is not Request.GENERATE or not store.answers(subject.key, bench.name):
                    if progress.on_skip:
                        progress.on_skip(subject, bench.name, f"{subject.origin}: no answers to this benchmark, no model here")
                    continue
                questions = store.questions(subject.key, bench.name)[: spec.limit]
                have = store.answers(subject.key, bench.name)
                recorded = {"backend": "imported", "origin": subject.origin}
                rows += _judge_answers(run, subject, bench, questions, have, recorded)
                continue
            match bench.request:  # what the benchmark needs from the model, dispatched once
                case Request.EXTERNAL:
                    rows += _score_external(run, subject, bench)
                case Request.LIKELIHOOD:
                    rows += _score_given(run, subject, bench)
                case Request.GENERATE:
                    rows += _score_generated(run, subject, bench)
            release_freed_memory()  # each benchmark's activations and logits, back to the system before the next
    rows += grade_together(run.deferred, run.base_answers, spec.judge_order == "rotate", spec.judge_contexts, store, progress)
    judge_head_to_head(run.pairs, run.base_answers, store, progress)
    return rows


def _score_generated(run: _Evaluation, subject: Subject, bench: Benchmark) -> list[ScoreRow]:
    """A :attr:`Request.GENERATE` benchmark: answer the questions not answered yet (stored batch by batch), then judge."""
    spec, store, progress = run.spec, run.store, run.progress
    settings = GenerationSettings(spec.max_new_tokens or Benchmark.answer_tokens, spec.batch_size, 0, subject.template)
    key = (subject.model, subject.template, subject.dtype)
    if key not in progress.generators:
        progress.generators[key] = make_generator(spec.backend, subject.model, settings, subject.dtype)
    generator = progress.generators[key]
    length = spec.max_new_tokens or bench.answer_tokens
    questions = bench.questions(dict(spec.sources).get(bench.name), spec.limit)
    have = store.answers(subject.key, bench.name)
    todo = [q for q in questions if q.id not in have]
    if progress.on_start:
        progress.on_start(subject, bench.name, len(todo))
    step = max(1, spec.batch_size)
    for start in range(0, len(todo), step):  # store batch by batch: an interruption loses one batch at most
        chunk = todo[start : start + step]
        answers = generator.generate(
            [q.prompt for q in chunk],
            [bench.temperature(q) for q in chunk],
            subject.adapter,
            on_batch=progress.on_answers,
            max_new_tokens=length,
        )
        tokenizer = generator.tokenizer
        tokens = None if tokenizer is None else [len(tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers]
        recorded = asdict(settings) | {"max_new_tokens": length, "top_p": 1.0, "backend": generator.name}
        store.add_answers(subject.key, bench.name, chunk, answers, recorded, tokens)
        have.update({q.id: a for q, a in zip(chunk, answers)})
    made = asdict(settings) | {"backend": generator.name}
    return _judge_answers(run, subject, bench, questions, have, made)


def _judge_answers(
    run: _Evaluation,
    subject: Subject,
    bench: Benchmark,
    questions: Sequence[Question],
    answers: dict[str, str],
    settings: dict[str, Any],
) -> list[ScoreRow]:
    """Grade a subject's answers to one benchmark (generated or imported) with each of its judges: alone, batch by
    batch as they are stored, or deferred to be graded together with its aggregator's other variants."""
    spec, store, progress = run.spec, run.store, run.progress
    rows = []
    for judge_name, judge in run.judges[bench.name]:
        waiting = Deferred(subject, bench, list(questions), answers, settings, (judge_name, judge))
        if subject.method == BASE:
            run.base_answers[(bench.name, subject.model, judge_name)] = waiting
        if spec.pairwise and judge.judges_pairs:
            run.pairs.append(waiting)
        if spec.judge_mode == "together" and subject.method != BASE and judge.judges_together:
            run.deferred.append(waiting)
            continue
        judged = store.judgments(subject.key, bench.name, judge_name)
        missing = [q for q in questions if q.id not in judged]
        step = max(1, spec.batch_size)
        for start in range(0, len(missing), step):  # stored as they come: an interruption loses one batch at most
            chunk = missing[start : start + step]
            new = judge.judge(chunk, [answers[q.id] for q in chunk])
            store.add_judgments(subject.key, bench.name, judge_name, new, question_clients(chunk))
            judged.update({j.question_id: j for j in new})
        rows.append(
            record_score(store, progress, subject, bench, judge_name, judge.setting, questions, judged, settings, answers)
        )
    return rows


LIKELIHOOD_JUDGE = "likelihood"
"""The judge column of benchmarks scored from log-likelihoods of given answers (no judge model)."""


def _precision(dtype: str) -> str:
    """How a likelihood row's judge setting ends: the precision its log-probs were computed in."""
    return f"; log-probs in {dtype}"


def _scored_in(subject: Subject, dtype: str) -> Subject:
    """The subject as its likelihood rows record it: the scoring precision joins its settings key.

    The leaderboard pools a cell's seeds over rows that share a settings key, and takes the newest
    experiment's where several compete. Precision in the key (as well as in the judge setting) keeps
    float32 and bfloat16 rows, or rows stored before the precision was recorded, from ever pooling: the
    newest precision's seeds make the entry. The judge name stays ``likelihood`` for every precision, so a
    rescore in another precision replaces the subject's rows rather than standing beside them.
    """
    return subject if subject.settings_key is None else replace(subject, settings_key=f"{subject.settings_key}+{dtype}")


def _score_given(run: _Evaluation, subject: Subject, bench: Benchmark) -> list[ScoreRow]:
    """A benchmark whose questions carry their answers (held-out pairs): forward passes only, one row per metric.

    A subject without held-out pairs (trained with ``holdout = 0``, or on labelled single responses)
    is skipped with the reason; the other benchmarks still run. Stored judgments are reused only when
    they were scored in this evaluation's precision (:func:`_precision`, :func:`_scored_in`).
    """
    store, progress, scorers = run.store, run.progress, run.scorers
    if subject.heldout is None:
        if progress.on_skip:
            progress.on_skip(
                subject,
                bench.name,
                "no held-out preference pairs (trained with holdout = 0, or on unpaired data); set holdout > 0 to score it",
            )
        return []
    questions = bench.questions(str(subject.heldout))  # every pair: `limit` saves generation, and there is none here
    if subject.local_only and subject.adapter is not None:
        untrained = sorted({q.client for q in questions if not client_adapter_dir(subject.adapter.parent, q.client).is_dir()})
        if untrained and progress.on_skip:
            left = sum(q.client in untrained for q in questions)
            progress.on_skip(
                subject,
                bench.name,
                f"{len(untrained)} client(s) never sampled in the federated schedule, so never trained locally; "
                f"their {left} held-out pairs are left out of the local-only score ({', '.join(untrained[:5])}"
                f"{', ...' if len(untrained) > 5 else ''})",
            )
        questions = [q for q in questions if q.client not in untrained]
        if not questions:
            return []
    metric_names = [f"{bench.name}.{m}" for m in bench.metrics]
    precision = _precision(scorers.dtype)
    recorded = {r.benchmark: r.judge_setting for r in store.scores() if (r.subject, r.judge) == (subject.key, LIKELIHOOD_JUDGE)}
    if all(
        len(store.question_scores(subject.key, name, LIKELIHOOD_JUDGE)) == len(questions)
        and recorded.get(name, "").endswith(precision)
        for name in metric_names
    ):
        judged = {name: store.judgments(subject.key, name, LIKELIHOOD_JUDGE) for name in metric_names}
    else:  # a few batched forward passes: cheaper to redo whole than to track per question
        if progress.on_start:
            progress.on_start(subject, bench.name, len(questions))
        scorer = scorers.scorer(subject)
        flat_prompts = [q.prompt for q in questions for _ in q.choices]
        flat_answers = [c for q in questions for c in q.choices]

        def by_question(flat: list[SequenceLogp]) -> list[list[SequenceLogp]]:
            out, i = [], 0
            for q in questions:
                out.append(flat[i : i + len(q.choices)])
                i += len(q.choices)
            return out

        policy = by_question(_policy_scores(scorer, subject, questions))
        reference = None
        if subject.adapter is not None:
            # keyed by the pairs scored, not the file: every cell of one data set and split writes the same held-out
            # pairs, so a study's cells share one reference pass (the base model's log-probs) per split
            digest = hashlib.sha256(subject.heldout.read_bytes() + "\n".join(q.id for q in questions).encode())
            ref_key = (subject.model, subject.template, scorers.dtype, digest.hexdigest())
            if ref_key not in scorers.reference:
                scorers.reference[ref_key] = by_question(scorer.score(flat_prompts, flat_answers, None))
            reference = scorers.reference[ref_key]
        if progress.on_answers:
            progress.on_answers(len(questions))
        judged = {}
        for metric, verdicts in bench.score_choices(questions, policy, reference).items():
            name = f"{bench.name}.{metric}"
            store.add_judgments(subject.key, name, LIKELIHOOD_JUDGE, verdicts, question_clients(questions))
            judged[name] = {v.question_id: v for v in verdicts}
    rows = []
    subject = _scored_in(subject, scorers.dtype)  # from here on, for the rows only
    for metric in bench.metrics:
        name = f"{bench.name}.{metric}"
        if subject.adapter is None and metric in bench.base_scores:
            row = score_fields(
                subject,
                name,
                bench,
                LIKELIHOOD_JUDGE,
                f"{metric}: fixed for the base model",
                len(questions),
                0,
                bench.base_scores[metric],
            ) | {"ci_note": "fixed by definition for the base model"}
            rows.append(store_score(store, progress, subject, ScoreRow(**row)))
        elif name in judged and judged[name]:
            rows.append(
                record_score(
                    store,
                    progress,
                    subject,
                    bench,
                    LIKELIHOOD_JUDGE,
                    f"{metric} on held-out pairs"
                    + (f" ({REWARDS[reward]})" if metric == "reward" and (reward := questions[0].reward) in REWARDS else "")
                    + (", each client's with its own local-only adapter" if subject.local_only else "")
                    + precision,
                    questions,
                    judged[name],
                    {"heldout": str(subject.heldout), "score_dtype": scorers.dtype},
                    benchmark_name=name,
                )
            )
    return rows


def _policy_scores(scorer: LikelihoodScorer, subject: Subject, questions: Sequence[Question]) -> list[SequenceLogp]:
    """Log-probs of every question's choices, flattened in order, under the subject's adapter; a local-only cell
    scores each client's questions with that client's own adapter."""
    if not subject.local_only or subject.adapter is None:
        return scorer.score(
            [q.prompt for q in questions for _ in q.choices], [c for q in questions for c in q.choices], subject.adapter
        )
    by_client: dict[str, list[int]] = {}
    for index, q in enumerate(questions):
        by_client.setdefault(q.client, []).append(index)
    scored: dict[int, list[SequenceLogp]] = {}
    for client, indices in by_client.items():
        mine = [questions[i] for i in indices]
        flat = scorer.score(
            [q.prompt for q in mine for _ in q.choices],
            [c for q in mine for c in q.choices],
            client_adapter_dir(subject.adapter.parent, client),
        )
        start = 0
        for i, q in zip(indices, mine):
            scored[i] = flat[start : start + len(q.choices)]
            start += len(q.choices)
    return [logp for i in range(len(questions)) for logp in scored[i]]


EVALUATORS: dict[str, type[Evaluator]] = {EVALUATOR: LmEvalEvaluator}
"""The built-in evaluators a benchmark can name (``Benchmark.evaluator = "lm_eval"``); a plugin's own is a class."""


def external_evaluator(bench: Benchmark) -> Evaluator:
    """The evaluator a :attr:`Request.EXTERNAL` benchmark names, or sets as its own class."""
    chosen = bench.evaluator
    if isinstance(chosen, type) and issubclass(chosen, Evaluator):
        return chosen()
    if isinstance(chosen, str) and chosen in EVALUATORS:
        return EVALUATORS[chosen]()
    raise FedbenchError(
        f"benchmark '{bench.name}' asks for the evaluator {chosen!r}, which is neither built in "
        f"({', '.join(EVALUATORS)}) nor an Evaluator class",
        "set the plugin's evaluator to a built-in name or to a subclass of fedbench.api.Evaluator",
    )


def _score_external(run: _Evaluation, subject: Subject, bench: Benchmark) -> list[ScoreRow]:
    """A :attr:`Request.EXTERNAL` benchmark: another evaluation harness scores it on the whole model (lm-eval).

    Its row is stored like a judged benchmark's, under ``<plugin>:<task>`` with the evaluator's judge name
    (``lm_eval``): the harness's metric with the interval from its standard error, and its per-document verdicts as
    judgments (so seeds pool and variants compare as elsewhere). A subject that has a row from the same
    request (task, shots, limit, ...) is not run again; the evaluator's per-document outputs stay in
    ``<run dir>/<judge>/`` (the base model's in ``<runs>/<base key>/<judge>/``).
    """
    spec, store, progress = run.spec, run.store, run.progress
    from fedbench.harness.models import resolve_model

    evaluator = external_evaluator(bench)
    settings = bench.evaluator_settings()
    request = evaluator.prepare(settings, spec.limit, spec.batch_size)
    name, judge = f"{bench.name}:{request.task}", evaluator.judge
    stored = [r for r in store.scores() if (r.subject, r.benchmark, r.judge) == (subject.key, name, judge)]
    if stored and request.done(stored[0].judge_setting):
        return [store_score(store, progress, subject, stored[0])]  # reported again, as resumed benchmarks are
    if progress.on_start:
        progress.on_start(subject, name, 1)
    home = store.path.parent / subject.key if subject.adapter is None else subject.adapter.parent
    model = ModelUnderTest(
        resolve_model(subject.model), subject.adapter, resolve_dtype(subject.dtype), spec.backend, home / judge
    )
    result = evaluator.run(settings, spec.limit, spec.batch_size, model)
    if progress.on_answers:
        progress.on_answers(1)
    store.add_judgments(subject.key, name, judge, result.verdicts)
    row = score_fields(subject, name, bench, judge, result.setting, result.n, 0, result.score)
    row |= {"ci_low": result.ci_low, "ci_high": result.ci_high, "ci_note": result.ci_note}
    return [store_score(store, progress, subject, ScoreRow(**row))]


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
                raise FedbenchError(
                    f"{origin}: unknown eval setting '{key}'.{did_you_mean(key, known)}", f"known: {', '.join(known)}"
                )
            if key in ("judge_params", "sources", "benchmark_params"):
                value = tuple(sorted(dict(value).items()))
            elif key in ("benchmarks", "judge_contexts"):
                value = tuple(v.strip() for v in value.split(",")) if isinstance(value, str) else tuple(value)
            merged[key] = value
    return EvalSpec(**merged)
