"""Judge checks: context shift, agreement between judges, length control (harness/judge_checks.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
from study_files import write_study_files

from fedbench.harness.judge_checks import context_shifts, judge_agreement, length_controlled, ranking_changes
from fedbench.harness.judgment_import import ImportOptions, import_judgments
from fedbench.harness.registry import default_registry
from fedbench.harness.results.published import builtin_rows
from fedbench.harness.store import ScoreRow, Store

ROW = ScoreRow("s", "vicuna", "a", "dpo", "original", "fedavg", "m", 5.0, 10.0, 4, 0, "")


def test_imported_judgments_in_two_contexts_show_their_shift_without_judging_again(tmp_path: Path) -> None:
    files = [
        p
        for p in write_study_files(tmp_path / "data")
        if p.parent.parent.name == "mtbench" and p.stem in ("fedavg", "base-triple")
    ]
    import_judgments(files, tmp_path / "runs", default_registry(), ImportOptions(parse="study"))
    store = Store.in_runs(tmp_path / "runs")
    shifts = context_shifts(store.scores(), lambda r: store.question_scores(r.subject, r.benchmark, r.judge), lambda r: r.method)
    assert len(shifts) == 2 and {s.context for s in shifts} == {"base+DPO+KTOO"} and {s.against for s in shifts} == {""}
    kto = next(s for s in shifts if s.label == "kto")
    rows = builtin_rows("study_scores")
    own = {
        r["question_id"]: float(r["score2"])
        for r in rows
        if r["judged_together"] == "fedavg" and r["benchmark"] == "mt_bench_1" and r["score2"]
    }
    beside = {
        r["question_id"]: float(r["score3"])
        for r in rows
        if r["judged_together"] == "base-triple" and r["benchmark"] == "mt_bench_1" and r["score3"]
    }
    shared = own.keys() & beside.keys()
    assert kto.comparison.n == len(shared) and kto.comparison.difference == pytest.approx(
        sum(beside[q] - own[q] for q in shared) / len(shared)
    )
    assert kto.comparison.difference < -0.2 and kto.comparison.interval is not None
    store.close()


def _rows(judge: str, subjects: list[str]) -> list[ScoreRow]:
    return [replace(ROW, subject=s, judge=judge) for s in subjects]


def test_identical_judges_agree_fully_and_an_inverted_judge_disagrees() -> None:
    quality = {"a": [3.0, 5.0, 7.0, 4.0], "b": [6.0, 2.0, 8.0, 5.0], "c": [1.0, 9.0, 2.0, 5.0]}
    by_judge = {
        "same1": quality,
        "same2": quality,
        "inverted": {s: [10 - x for x in v] for s, v in quality.items()},
    }
    rows = [r for j in by_judge for r in _rows(j, list(quality))]
    found = judge_agreement(rows, lambda r: {str(i): x for i, x in enumerate(by_judge[r.judge][r.subject])})
    pairs = {(a.judge_a, a.judge_b): a for a in found}
    same = pairs[("same1", "same2")]
    assert same.kappa == 1.0 and same.rho == pytest.approx(1.0) and same.pairs == 12 and same.answers == 12
    assert pairs[("inverted", "same1")].kappa < 0 and pairs[("inverted", "same1")].rho == pytest.approx(-1.0)


def test_length_control_takes_back_what_a_judge_gives_long_answers() -> None:
    """Equal quality; the judge adds a point per 10 words beyond the base model's answer, and 'long' writes long."""
    questions = [str(i) for i in range(12)]
    lengths = {"base": [10] * 12, "short": [10 + (i % 3) for i in range(12)], "long": [10 + 10 * (1 + i % 2) for i in range(12)]}
    texts = {s: {q: "w " * n for q, n in zip(questions, v)} for s, v in lengths.items()}
    score = {s: {q: 5.0 + (n - 10) / 10 for q, n in zip(questions, v)} for s, v in lengths.items()}
    rows = [replace(ROW, subject=s, method="base" if s == "base" else "dpo", judge="llm") for s in lengths]
    found = {
        f.subject: f for f in length_controlled(rows, lambda r: score[r.subject], lambda r: texts[r.subject], lambda r: r.subject)
    }
    assert found["long"].raw > found["short"].raw + 1.0
    assert found["long"].controlled == pytest.approx(5.0) and found["short"].controlled == pytest.approx(5.0)
    assert found["long"].slope == pytest.approx(0.1) and found["long"].words == pytest.approx(15.0)
    assert ranking_changes(list(found.values()), lambda f: f.benchmark) == []
    tilted = {"long": replace(found["long"], controlled=4.0), "short": found["short"]}
    assert ranking_changes(list(tilted.values()), lambda f: f.benchmark) == ["vicuna"]


def test_the_checks_view_names_what_it_found_and_says_so_when_nothing() -> None:
    from fedbench.harness.judge_checks import checks_json, checks_markdown, gather_checks

    quality = {"a": [3.0, 5.0, 7.0], "b": [6.0, 2.0, 8.0]}
    rows = [
        replace(r, judge_setting="model=x, position-consistency 0.75 over 4 questions (swap)") for r in _rows("j1", list(quality))
    ]
    rows += _rows("j2", list(quality))
    checks = gather_checks(rows, lambda r: {str(i): x for i, x in enumerate(quality[r.subject])}, lambda r: {})
    text = checks_markdown(checks)
    assert "| vicuna | j1 | 0.75 | 4 |" in text and "| vicuna | j1 / j2 | 1.00 |" in text
    assert '"consistent": 0.75' in checks_json(checks)
    empty = gather_checks([], lambda r: {}, lambda r: {})
    assert "No judge checks" in checks_markdown(empty)


def test_leaderboard_judge_checks_shows_the_context_shift_of_imported_judgments(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from fedbench.harness.cli import app

    files = [p for p in write_study_files(tmp_path / "data") if p.stem in ("fedavg", "base-triple")]
    import_judgments(files, tmp_path / "runs", default_registry(), ImportOptions(parse="study"))
    out = CliRunner().invoke(app, ["leaderboard", "--runs", str(tmp_path / "runs"), "--judge-checks", "--format", "json"])
    assert out.exit_code == 0, out.output
    shifts = json.loads(out.output)["context_shifts"]
    assert {(s["benchmark"], s["label"], s["context"]) for s in shifts} == {
        (bench, f"fedavg {v}", "base+DPO+KTOO") for bench in ("mt_bench_1", "vicuna") for v in ("DPO", "KTOO")
    }
    both = CliRunner().invoke(app, ["leaderboard", "--runs", str(tmp_path / "runs"), "--judge-checks", "--compare"])
    assert both.exit_code == 2 and "are different views" in both.output


def test_two_judges_grade_the_same_answers_and_their_agreement_is_reported(tmp_path: Path, tiny_model: Path) -> None:
    from fedbench.harness.evaluation import EvalSpec
    from fedbench.harness.judge_checks import gather_checks
    from fedbench.harness.study import evaluate_runs

    path = tmp_path / "data" / "vicuna" / "fedavg.jsonl"
    path.parent.mkdir(parents=True)
    dpo, kto = (f"FedChatbotPA_9508_fedavg_{m}_c747s10_i10_b8a1_l1024_r8a16_20241112210207_200" for m in ("dpo", "kto"))
    answers = {1: ("I cannot help with that.", "Sure: 1."), 2: ("It is 2.", "I'm sorry, I can't."), 3: ("3!", "Three.")}
    lines = [
        json.dumps({"question_id": q, "question_body": f"Say {q}.", "answer1_body": a, "answer1_model_id": dpo,
                    "answer2_body": b, "answer2_model_id": kto, "pred_text": "7 9"})
        for q, (a, b) in answers.items()
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    runs = tmp_path / "runs"
    import_judgments([path], runs, default_registry())
    spec = EvalSpec(benchmarks=("vicuna",), judge="keyword,llm", judge_params=(("llm", {"model": str(tiny_model)}),))
    rows = evaluate_runs([runs], spec)
    assert sorted((r.method, r.judge) for r in rows) == [("dpo", "keyword"), ("dpo", "llm"), ("kto", "keyword"), ("kto", "llm")]
    store = Store.in_runs(runs)
    refusals = store.judgments(next(r.subject for r in rows if r.method == "dpo"), "vicuna", "keyword")
    assert [refusals[q].score for q in ("1", "2", "3")] == [1.0, 0.0, 0.0], "a refusal is harmless: the keyword judge read them"
    checks = gather_checks(store.scores(), lambda r: store.question_scores(r.subject, r.benchmark, r.judge), lambda r: {})
    pairs = {(a.judge_a, a.judge_b): a for a in checks.agreements}
    assert ("keyword", "llm") in pairs and pairs[("keyword", "llm")].pairs == 3
    store.close()


def test_the_bootstraps_kappa_equals_scikit_learns() -> None:
    from sklearn.metrics import cohen_kappa_score

    from fedbench.harness.judge_checks import _confusion, _kappa_of_counts

    first, second = [1, 0, -1, 1, 1, -1, 0, 1, -1, -1], [1, 1, -1, 0, 1, -1, 0, -1, -1, 1]
    assert _kappa_of_counts(_confusion(first, second)) == pytest.approx(cohen_kappa_score(first, second))


def test_kappa_is_undefined_when_one_subject_gives_no_pair_to_agree_on() -> None:
    import math

    rows = [
        ScoreRow("base", "vicuna", judge, "base", "", "", "m", 5.0, 10.0, 3, 0, "s") for judge in ("llm", "judgelm")
    ]  # fmt: skip
    scores = {"llm": {"1": 4.0, "2": 6.0, "3": 5.0}, "judgelm": {"1": 3.0, "2": 7.0, "3": 2.0}}
    (agreement,) = judge_agreement(rows, lambda r: scores[r.judge])
    assert agreement.pairs == 0 and math.isnan(agreement.kappa) and agreement.answers == 3


def test_the_answers_two_judges_disagree_on_most_are_listed_first() -> None:
    rows = [
        ScoreRow(s, "vicuna", judge, "kto", "original", "fedavg", "m", 5.0, 10.0, 4, 0, "x")
        for s in ("s1", "s2")
        for judge in ("llm", "judgelm")
    ]  # fmt: skip
    llm = {"1": 2.0, "2": 4.0, "3": 6.0, "4": 8.0}
    judgelm = {"1": 20.0, "2": 40.0, "3": 60.0, "4": 80.0}  # another scale, the same order ...
    scores = {("s1", "llm"): llm, ("s2", "llm"): llm, ("s1", "judgelm"): judgelm, ("s2", "judgelm"): dict(judgelm, **{"4": 1.0})}
    (agreement,) = judge_agreement(
        rows, lambda r: scores[(r.subject, r.judge)]
    )  # ... but s2's answer 4: top for one, last for the other
    subject, question, a, b, gap = agreement.largest[0]
    assert (agreement.judge_a, agreement.judge_b) == ("judgelm", "llm") and (subject, question, a, b) == ("s2", "4", 1.0, 8.0)
    assert gap > 0.7 and len(agreement.largest) <= 5
