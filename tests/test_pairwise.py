"""Head-to-head judging in both orders, and together-grading in further contexts (issue: judges you can check)."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path

import pytest

from fedbench.harness.errors import FedbenchError
from fedbench.harness.evaluation import EvalSpec, _Evaluation, _judge_answers, _Scorers, eval_spec
from fedbench.harness.grading import grade_together, judge_head_to_head
from fedbench.harness.interfaces import Judge, Judgment, Question
from fedbench.harness.judge_checks import checks_markdown, gather_checks
from fedbench.harness.pairwise import judge_pairs, pair_statistics
from fedbench.harness.registry import default_registry
from fedbench.harness.scoring import EvalProgress
from fedbench.harness.store import Store
from fedbench.harness.subjects import Subject

QUESTIONS = [Question(str(i), f"question {i}") for i in range(20)]


class FirstAlways(Judge):
    """Prefers whichever answer it is shown first: the worst position bias there is."""

    name = "first"

    def judge(self, questions: Sequence[Question], answers: Sequence[str]) -> list[Judgment]:
        return [Judgment(q.id, 5.0, "") for q in questions]

    def judge_pair(self, question: Question, first: str, second: str) -> tuple[str | None, str]:
        return "first", "A"


class ByNumber(Judge):
    """Scores an answer by the number in its text whatever the order: a judge with no position bias."""

    name = "number"

    def __init__(self) -> None:
        self.calls: list[int] = []

    def judge(self, questions: Sequence[Question], answers: Sequence[str]) -> list[Judgment]:
        return [Judgment(q.id, float(a.split(":")[1]), "alone") for q, a in zip(questions, answers)]

    def judge_together(self, question: Question, answers: Sequence[str]) -> tuple[list[float] | None, str]:
        self.calls.append(len(answers))
        # beside more answers, every score drops by one: a context effect the checks must find
        return [float(a.split(":")[1]) - (len(answers) > 3) for a in answers], "together"


def _answers(score: float) -> dict[str, str]:
    return {q.id: f"x:{score}" for q in QUESTIONS}


def test_a_judge_that_always_prefers_the_first_answer_is_never_consistent_and_fully_biased(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    asked = judge_pairs(store, "vicuna", "first", FirstAlways(), QUESTIONS, {"a": _answers(1), "b": _answers(2)})
    assert asked == 40, "each question in both orders"
    rates, biases = pair_statistics(store.pair_verdicts())
    (bias,) = biases
    assert bias.consistency == 0.0 and bias.first == 1.0 and bias.questions == 20
    (rate,) = rates
    assert (rate.wins, rate.ties, rate.losses, rate.rate) == (0, 20, 0, 0.5), "order-inconsistent verdicts are ties"
    assert judge_pairs(store, "vicuna", "first", FirstAlways(), QUESTIONS, {"a": _answers(1), "b": _answers(2)}) == 0, (
        "stored verdicts are not asked again"
    )
    store.close()


def test_an_unbiased_judge_is_consistent_and_its_win_rate_has_an_interval(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    b_answers = {q.id: f"x:{2 if int(q.id) < 15 else 0}" for q in QUESTIONS}  # b wins 15 questions, loses 5
    judge_pairs(store, "vicuna", "number", ByNumber(), QUESTIONS, {"a": _answers(1), "b": b_answers})
    rates, (bias,) = pair_statistics(store.pair_verdicts())
    assert bias.consistency == 1.0 and bias.first == 0.5
    (rate,) = rates
    assert (rate.a, rate.b, rate.wins, rate.losses, rate.rate) == ("a", "b", 5, 15, 0.25)
    assert rate.interval is not None and rate.interval.low < 0.25 < rate.interval.high
    store.close()


def test_an_unparsed_verdict_decides_nothing(tmp_path: Path) -> None:
    class Silent(FirstAlways):
        def judge_pair(self, question: Question, first: str, second: str) -> tuple[str | None, str]:
            return (None, "?") if question.id == "0" else ("tie", "C")

    store = Store(tmp_path / "results.sqlite")
    judge_pairs(store, "vicuna", "silent", Silent(), QUESTIONS, {"a": _answers(1), "b": _answers(2)})
    (rate,), (bias,) = pair_statistics(store.pair_verdicts())
    assert rate.ties == 19 and bias.questions == 19 and bias.consistency == 1.0
    store.close()


def _evaluation(
    tmp_path: Path, spec: EvalSpec, judge: Judge, questions: Sequence[Question] = QUESTIONS
) -> tuple[_Evaluation, list[Subject]]:
    store = Store(tmp_path / "results.sqlite")
    run = _Evaluation(spec, store, EvalProgress(), {"vicuna": [(judge.name, judge)]}, _Scorers("float32"))
    bench = default_registry().create("benchmark", "vicuna")
    subjects = [Subject("base-m", "m", "chat", "float32")] + [
        Subject(f"{m}-{lay}", "m", "chat", "float32", tmp_path / f"{m}-{lay}" / "adapter", m, lay, "fedavg")
        for m, lay in (("dpo", "original"), ("kto", "original"), ("kto", "redistributed"))
    ]
    for score, subject in enumerate(subjects, 3):
        _judge_answers(run, subject, bench, questions, _answers(score), {"backend": "hf"})
    return run, subjects


def test_pairwise_evaluation_meets_every_two_variants_and_the_base_model_and_the_checks_show_it(tmp_path: Path) -> None:
    run, subjects = _evaluation(tmp_path, EvalSpec(pairwise=True), ByNumber())
    judge_head_to_head(run.pairs, run.base_answers, run.store, run.progress)
    verdicts = run.store.pair_verdicts()
    assert len(verdicts) == 6 * 2 * 20, "4 subjects: 6 pairs, both orders, 20 questions"
    assert {v.judge for v in verdicts} == {"number-pairwise"}
    checks = gather_checks(
        run.store.scores(), lambda r: run.store.question_scores(r.subject, r.benchmark, r.judge), lambda r: {}, verdicts
    )
    rates = {(checks.labels[w.a], checks.labels[w.b]): w.rate for w in checks.win_rates}
    assert rates[("Base", "fedavg KTOR")] == 0.0 and rates[("fedavg DPO", "fedavg KTOO")] == 0.0
    text = checks_markdown(checks)
    assert "win rates, head to head" in text and "position bias, head to head" in text
    run.store.close()


def test_further_contexts_grade_the_same_answers_again_and_report_the_shift(tmp_path: Path) -> None:
    judge = ByNumber()
    spec = EvalSpec(judge_mode="together", judge_contexts=("alone", "base"))
    run, subjects = _evaluation(tmp_path, spec, judge)
    rows = grade_together(run.deferred, run.base_answers, True, spec.judge_contexts, run.store, run.progress)
    by = {(r.subject, r.judge): r for r in rows}
    assert by[("kto-original", "number-together")].score == 5.0  # base 3, DPO 4, KTOO 5, KTOR 6
    assert by[("kto-original", "number-together@alone")].score == 5.0
    beside_base = by[("kto-original", "number-together@with-base")]
    assert beside_base.score == 4.0 and beside_base.tag == "judged beside the base model"
    assert ("base-m", "number-together@with-base") not in by, "only the variants' scores are recorded"
    assert sorted(set(judge.calls)) == [3, 4]
    store = run.store
    checks = gather_checks(store.scores(), lambda r: store.question_scores(r.subject, r.benchmark, r.judge), lambda r: {})
    shifts = {(s.label, s.context): s.comparison.difference for s in checks.shifts if s.subject == "kto-original"}
    assert shifts == {("fedavg KTOO", "alone"): 0.0, ("fedavg KTOO", "with-base"): -1.0}
    store.close()


def test_bad_contexts_are_refused_with_the_fix() -> None:
    with pytest.raises(FedbenchError, match="(?s)unknown context 'nearby'.*use any of alone, base"):
        EvalSpec(judge_mode="together", judge_contexts=("nearby",))
    with pytest.raises(FedbenchError, match="judge_mode is not 'together'"):
        EvalSpec(judge_contexts=("alone",))
    assert eval_spec(None, {"judge_mode": "together", "judge_contexts": "alone,base"}).judge_contexts == ("alone", "base")


def test_a_schema_4_store_gains_the_pairwise_table_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("DROP TABLE pairwise")
    db.execute("UPDATE meta SET value = '4' WHERE key = 'schema_version'")
    db.execute("INSERT INTO subjects VALUES ('s', 'trained', '{}')")
    db.commit()
    db.close()
    store = Store(path)
    assert store.origins() == {"s": "trained"} and store.pair_verdicts() == []
    store.close()


def test_the_llm_judge_meets_imported_answers_head_to_head_and_in_context_from_the_command_line(
    tmp_path: Path, tiny_model: Path
) -> None:
    """`fedbench eval RUNS --set eval.pairwise=true ...` with the llm judge (pair-v2 verdicts, ratings together), then
    `leaderboard --judge-checks` shows win rates, position bias and the context shift."""
    import json

    from typer.testing import CliRunner

    from fedbench.harness.cli import app
    from fedbench.harness.judgment_import import import_judgments

    path = tmp_path / "data" / "vicuna" / "fedavg.jsonl"
    path.parent.mkdir(parents=True)
    dpo, kto = (f"FedChatbotPA_9508_fedavg_{m}_c747s10_i10_b8a1_l1024_r8a16_20241112210207_200" for m in ("dpo", "kto"))
    lines = [
        json.dumps({"question_id": q, "question_body": f"Say {q}.", "answer1_body": f"It is {q}.", "answer1_model_id": dpo,
                    "answer2_body": "No.", "answer2_model_id": kto, "pred_text": "7 9"})
        for q in (1, 2, 3)
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    runs = tmp_path / "runs"
    import_judgments([path], runs, default_registry())
    sets = ["eval.pairwise=true", "eval.judge_mode='together'", 'eval.judge_contexts=["alone"]']
    sets.append(f'eval.judge_params={{ model = "{tiny_model}" }}')
    args = ["eval", str(runs), "--benchmarks", "vicuna", "--judge", "llm", *(x for s in sets for x in ("--set", s))]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    store = Store.in_runs(runs)
    verdicts = store.pair_verdicts()
    assert len(verdicts) == 6 and {v.judge for v in verdicts} == {"llm-pairwise"}
    assert all(v.winner in ("first", "second", "tie") for v in verdicts), "expected verdicts always parse"
    assert {r.judge for r in store.scores() if r.method != "base"} >= {"llm-together", "llm-together@alone"}
    store.close()
    shown = CliRunner().invoke(app, ["leaderboard", "--runs", str(runs), "--judge-checks", "--format", "markdown"])
    assert shown.exit_code == 0, shown.output
    assert "win rates, head to head" in shown.output and "fedavg DPO" in shown.output
    assert "context shift" in shown.output and "alone vs own" in shown.output
    refused = CliRunner().invoke(app, ["eval", str(runs), "--set", "lora_r=16"])
    assert refused.exit_code == 2 and "takes eval settings only" in refused.output


def test_a_question_judged_in_one_order_only_waits_for_the_other(tmp_path: Path) -> None:
    from fedbench.harness.store import PairVerdict

    verdicts = [
        PairVerdict("vicuna", "j-pairwise", "b", "a", "1", "first"),  # b shown first only: an interrupted run
        PairVerdict("vicuna", "j-pairwise", "a", "b", "2", "first"),
        PairVerdict("vicuna", "j-pairwise", "b", "a", "2", "second"),
    ]
    (rate,), (bias,) = pair_statistics(verdicts)
    assert rate.wins == 1 and rate.questions == 1 and bias.questions == 1


def test_the_reference_context_grades_beside_the_reference_answer_where_a_question_has_one(tmp_path: Path) -> None:
    questions = [Question(q.id, q.prompt, reference="x:10" if int(q.id) % 2 else None) for q in QUESTIONS]
    spec = EvalSpec(judge_mode="together", judge_contexts=("reference",))
    run, _ = _evaluation(tmp_path, spec, ByNumber(), questions)
    found = grade_together(run.deferred, run.base_answers, True, spec.judge_contexts, run.store, run.progress)
    rows = {(r.subject, r.judge): r for r in found}
    beside = rows[("kto-original", "number-together@with-reference")]
    assert beside.n == 10 and beside.score == 4.0, "the 10 questions with a reference, each graded among 4 answers"
    assert beside.tag == "judged beside the reference answer"
    assert run.store.judgments("reference", "vicuna", "number-together@with-reference") == {}, "the reference is not a subject"
    run.store.close()
