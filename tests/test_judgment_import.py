"""`fedbench import`: the study's published judgments (rebuilt from the shipped per-question figures) as subjects."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from study_files import write_study_files
from typer.testing import CliRunner, Result

from fedbench.harness.cli import app
from fedbench.harness.errors import FedbenchError
from fedbench.harness.judgment_import import ImportOptions, identify, import_judgments, parse_map
from fedbench.harness.registry import default_registry
from fedbench.harness.results.published import builtin_rows, load_reference
from fedbench.harness.store import SCHEMA_VERSION, Store

FEDAVG_KTOR_MT = ("fedavg", "mt_bench_1", "KTOR")
"""The one cell the shipped figures do not reproduce: 8.14 by the study's own rule, 8.11 printed."""


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250"})


@pytest.fixture(scope="module")
def study_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("study") / "data"
    assert len(write_study_files(root)) == 16  # 7 aggregators + the base-model file, x 2 benchmarks
    return root


@pytest.fixture(scope="module")
def imported(study_files: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A runs folder holding the study's files imported with both parse rules."""
    runs = tmp_path_factory.mktemp("imported")
    for parse in ("study", "strict"):
        out = _cli("import", str(study_files), "--runs", str(runs), "--parse", parse)
        assert out.exit_code == 0, out.output
    return runs


def _board(runs: Path, *args: str) -> dict:
    out = _cli("leaderboard", "--runs", str(runs), "--format", "json", *args)
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_the_study_rule_reproduces_table_1_from_its_judgments(imported: Path) -> None:
    board = _board(imported, "--reference", "study", "--judge", "judgelm-together-study")
    paper = load_reference("study")
    checked = 0
    for entry in board["entries"]:
        if entry["benchmark"] == "advbench" or entry["paper"] is None:
            continue
        assert entry["yours"] is not None, entry
        key = (entry["aggregator"], entry["benchmark"], entry["variant"] or "")
        if key == FEDAVG_KTOR_MT:
            assert round(entry["yours"], 2) == 8.14 and entry["paper"] == 8.11
        else:
            assert abs(entry["yours"] - entry["paper"]) <= 0.005 + 1e-9, key
        assert entry["ci_low"] < entry["yours"] < entry["ci_high"]
        checked += 1
    assert checked == 42 + 2 and paper.value("Base", "vicuna", "") == 7.51


def test_the_strict_parser_fails_replies_the_study_rule_reads_and_both_live_side_by_side(imported: Path) -> None:
    store = Store.in_runs(imported)
    rows = {(r.aggregator, r.benchmark, r.method, r.layout, r.judge): r for r in store.scores()}
    strict = rows[("fedyogi", "mt_bench_1", "dpo", "original", "judgelm-together")]
    study = rows[("fedyogi", "mt_bench_1", "dpo", "original", "judgelm-together-study")]
    assert (strict.failures, study.failures) == (1, 0)  # question 125: "1\n...1 and 1." is no score line
    assert strict.score is not None and study.score is not None and strict.score - study.score > 0.09
    judgments = store.judgments(strict.subject, "mt_bench_1", "judgelm-together")
    assert (
        judgments["125"].score is None
        and store.judgments(study.subject, "mt_bench_1", "judgelm-together-study")["125"].score == 1.0
    )
    assert "parse=study" in study.judge_setting and "JudgeLM-13B-v1.0" in study.judge_setting
    store.close()


def test_the_base_model_file_is_its_own_judging_context(imported: Path) -> None:
    board = _board(imported, "--judge", "judgelm-together-study")
    values = {(e["row"], e["benchmark"], e["variant"]): (e["score"], e["judge"]) for e in board["entries"]}
    assert round(values[("Base", "mt_bench_1", None)][0], 2) == 7.51
    side = values[("fedavg [judged together: base, DPO, KTOO]", "mt_bench_1", "KTOO")]
    assert round(side[0], 2) == 7.75 and side[1] == "judgelm-together-study@base+DPO+KTOO"
    own = values[("fedavg", "mt_bench_1", "KTOO")]
    assert round(own[0], 2) == 8.14 and own[1] == "judgelm-together-study", "the same answers beside DPO and KTOR"


def test_compare_gives_per_aggregator_and_pooled_tests_with_holm_and_names_unequal_budgets(imported: Path) -> None:
    out = _board(imported, "--compare", "--judge", "judgelm-together-study")
    per_agg = out["comparisons"]
    assert len(per_agg) == 42 + 2  # + DPO/KTOO beside the base model (their own row: FedAvg judged with the base)
    wins = {(c["benchmark"], c["comparison"]): 0 for c in per_agg}
    for c in per_agg:
        if "judged together" not in c["aggregator"]:
            wins[(c["benchmark"], c["comparison"])] += c["significant"] and c["difference"] > 0
    assert wins[("mt_bench_1", "KTOO - DPO")] == 0 and wins[("mt_bench_1", "KTOR - DPO")] == 0
    assert wins[("vicuna", "KTOO - DPO")] == 5 and wins[("vicuna", "KTOR - DPO")] == 2
    pooled = {(p["benchmark"], p["comparison"]): p for p in out["pooled"]}
    assert len(pooled) == 6 and all(len(p["aggregators"]) == 7 and p["n"] == 80 for p in pooled.values())
    assert pooled[("mt_bench_1", "KTOO - DPO")]["p_holm"] < 0.01 and pooled[("vicuna", "KTOR - DPO")]["p_holm"] < 0.01
    assert not pooled[("mt_bench_1", "KTOR - KTOO")]["significant"] and not pooled[("vicuna", "KTOR - KTOO")]["significant"]
    assert "aggregators fixed" in out["pooled_test"]
    fedavgm = next(c for c in per_agg if c["aggregator"] == "fedavgm" and c["comparison"] == "KTOO - DPO")
    assert fedavgm["budget"] == "round DPO 50, KTOO 100"
    assert "fedavg: length DPO 512, KTOR 1024" in pooled[("vicuna", "KTOR - DPO")]["budget"]
    table = _cli("leaderboard", "--runs", str(imported), "--judge", "judgelm-together-study", "--format", "markdown")
    assert "Unequal budgets, fedavgm: round DPO 50, KTOO 100, KTOR 200" in table.output


def test_importing_a_file_again_changes_nothing(study_files: Path, tmp_path: Path) -> None:
    files = sorted(study_files.rglob("fedavg.jsonl"))
    import_judgments(files, tmp_path, default_registry())
    store = Store.in_runs(tmp_path)
    tables = ("scores", "answers", "judgments", "subjects")
    before = {t: sorted(store.db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables}
    store.close()
    import_judgments(files, tmp_path, default_registry())
    store = Store.in_runs(tmp_path)
    assert {t: sorted(store.db.execute(f"SELECT * FROM {t}").fetchall()) for t in tables} == before
    assert len(before["scores"]) == 6
    store.close()


def _line(qid: int = 81, **extra: object) -> str:
    row = {"question_id": qid, "question_body": "q", "pred_text": "8 7", "pred_model_id": "JudgeLM-13B-v1.0"}
    row |= {"answer1_body": "a", "answer1_model_id": "mine-dpo", "answer2_body": "b", "answer2_model_id": "mine-kto"}
    return json.dumps(row | extra)


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ([_line(), "{not json"], "line 2 is not JSON"),
        ([_line(), json.dumps({"question_id": 82, "question_body": "q", "answer1_body": "a"})], "line 2 lacks pred_text"),
        (
            [_line(), _line(82, answer3_body="c", answer3_model_id="x")],
            "line 2 holds 3 answers where the file's first line holds 2",
        ),
        ([_line(), _line(7)], "question_id 7 (judged question 2) is not in mt_bench_1's set (81-160)"),
    ],
)
def test_a_bad_file_names_file_and_line_and_stores_nothing(tmp_path: Path, lines: list[str], words: str) -> None:
    good = tmp_path / "mtbench" / "good.jsonl"
    good.parent.mkdir()
    good.write_text(_line() + "\n")
    bad = tmp_path / "mtbench" / "zz_bad.jsonl"
    bad.write_text("\n".join(lines) + "\n")
    maps = parse_map(["mine-dpo=fedavg/dpo/original", "mine-kto=fedavg/kto/original"])
    with pytest.raises(FedbenchError) as err:
        import_judgments([tmp_path / "mtbench"], tmp_path / "runs", default_registry(), ImportOptions(maps=maps))
    assert words in err.value.problem and str(bad) in err.value.problem
    assert not (tmp_path / "runs" / "results.sqlite").exists(), "every file is checked before any is written"


def test_an_unknown_model_id_shows_the_map_syntax_and_map_names_any_cell(tmp_path: Path) -> None:
    path = tmp_path / "vicuna" / "mine.jsonl"
    path.parent.mkdir()
    path.write_text(_line(3) + "\n")
    out = _cli("import", str(path), "--runs", str(tmp_path / "runs"))
    assert out.exit_code == 2 and "mine-dpo" in out.output and "--map MODEL_ID=aggregator/method/layout" in out.output
    out = _cli("import", str(path), "--runs", str(tmp_path / "runs"), "--map", "mine-dpo=fedprox/dpo/original",
               "--map", "mine-kto=fedprox/kto/redistributed")  # fmt: skip
    assert out.exit_code == 0, out.output
    board = _board(tmp_path / "runs")
    assert {(e["row"], e["variant"], e["score"]) for e in board["entries"]} == {("fedprox", "DPO", 8.0), ("fedprox", "KTOR", 7.0)}
    with pytest.raises(FedbenchError, match="aggregator/method/layout"):
        parse_map(["mine-dpo=fedavg/dpo"])


def test_openfedllm_run_names_give_the_cell_and_its_training_budget() -> None:
    source = identify("FedChatbotPA_9508_fedadam_kto_dist_c747s10_i10_b8a1_l1024_r8a16_20241204030937_180", {}, ["alpaca-native"])
    assert (source.aggregator, source.method, source.layout, source.role) == ("fedadam", "kto", "redistributed", "KTOR")
    budget = dict(source.budget)
    assert budget["rounds"] == 180 and budget["max_length"] == 1024 and budget["clients"] == 747
    assert (budget["clients_per_round"], budget["local_steps"], budget["batch_size"], budget["grad_accum"]) == (10, 10, 8, 1)
    assert (budget["lora_r"], budget["lora_alpha"]) == (8, 16)
    assert identify("alpaca-native", {}, ["alpaca-native"]).role == "base"


def test_reference_study_without_results_shows_the_papers_table_alone(tmp_path: Path) -> None:
    out = _board(tmp_path / "nothing-here", "--reference", "study")
    assert out["entries"] and all(e["yours"] is None and e["paper"] is not None for e in out["entries"])


def test_a_schema_3_store_gains_the_subjects_table(tmp_path: Path) -> None:
    path = tmp_path / "results.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    with db:
        db.execute("DROP TABLE subjects")
        db.execute("UPDATE meta SET value = '3' WHERE key = 'schema_version'")
    db.close()
    store = Store(path)
    store.put_subject("s", "trained", {"rounds": 3})
    assert store.budgets() == {"s": {"rounds": 3}}
    assert store.db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)
    store.close()


def test_eval_judges_imported_answers_again_with_another_judge_without_generating(tmp_path: Path, tiny_model: Path) -> None:
    from fedbench.harness import evaluation
    from fedbench.harness.evaluation import EvalSpec
    from fedbench.harness.study import evaluate_runs

    path = tmp_path / "data" / "vicuna" / "fedavg.jsonl"
    path.parent.mkdir(parents=True)
    dpo, kto = (f"FedChatbotPA_9508_fedavg_{m}_c747s10_i10_b8a1_l1024_r8a16_20241112210207_200" for m in ("dpo", "kto"))
    lines = [
        json.dumps({"question_id": q, "question_body": f"Say {q}.", "answer1_body": f"{q}!", "answer1_model_id": dpo,
                    "answer2_body": f"It is {q}.", "answer2_model_id": kto, "pred_text": "7 9"})
        for q in (1, 2, 3)
    ]  # fmt: skip
    path.write_text("\n".join(lines) + "\n")
    runs = tmp_path / "runs"
    import_judgments([path], runs, default_registry())

    def no_answers(*args: object, **kwargs: object) -> None:
        raise AssertionError("an imported subject has no model here: nothing may answer again")

    spec = EvalSpec(benchmarks=("vicuna", "advbench"), judge="llm", judge_params=(("model", str(tiny_model)),), batch_size=4)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(evaluation, "make_generator", no_answers)
        rows = evaluate_runs([runs], spec)
    assert {(r.aggregator, r.method, r.layout, r.judge, r.n, r.failures) for r in rows} == {
        ("fedavg", "dpo", "original", "llm", 3, 0),
        ("fedavg", "kto", "original", "llm", 3, 0),
    }
    store = Store.in_runs(runs)
    by_method = {r.method: r.subject for r in rows}
    assert store.answers(by_method["kto"], "vicuna") == {"1": "It is 1.", "2": "It is 2.", "3": "It is 3."}
    assert {r.judge for r in store.scores()} == {"judgelm-together", "llm"}, "the imported judgments stay beside the new"
    assert all(0 <= j.score <= 10 for j in store.judgments(by_method["dpo"], "vicuna", "llm").values() if j.score is not None)
    store.close()


def test_the_paper_profile_trains_as_the_studys_run_names_record() -> None:
    """Every setting a run name records agrees with the profile, except the deviations the profile names."""
    from collections import Counter

    from fedbench.harness.cli import _profile

    profile = _profile("paper")
    budgets = [dict(identify(r["run_name"], {}, ["alpaca-native"]).budget) for r in builtin_rows("study_run_names")]
    trained = [b for b in budgets if b]
    for key in ("rounds", "clients_per_round", "batch_size", "grad_accum", "max_length", "lora_r", "lora_alpha"):
        assert Counter(b[key] for b in trained).most_common(1)[0][0] == profile[key], key
    assert {b["clients"] for b in trained} == {747} and {b["local_steps"] for b in trained} == {10}
    assert profile["local_steps"] == "dynamic", "the study's script overrides max_steps (i10) with --dynamic_local_step"
    assert sorted({b["rounds"] for b in trained}) == [50, 100, 130, 180, 200]
    assert profile["eval"]["judge_order"] == "fixed" and "lm_eval:mmlu" in profile["eval"]["benchmarks"]


def test_the_report_shows_imported_answers_and_marks_replies_the_parse_rules_read_differently(imported: Path) -> None:
    import os

    from fedbench.harness.results.report import gather, write_report

    report = gather(imported)
    assert not [n for n in report.notes if "answers" in n], report.notes  # every imported answer set is found
    mt = next(b for b in report.benchmarks if b.name == "mt_bench_1")
    assert len(mt.questions) == 80 and all(s.answers for s in mt.sets)
    marked = {s.label: s.disagreements for s in mt.sets if s.disagreements}
    fedyogi = {f"{cell}-fedyogi": {"125"} for cell in ("dpo-original", "kto-original", "kto-redistributed")}
    assert marked == fedyogi, "only FedYogi's question 125 reads as 1/1/1 by the study's rule and fails the strict one"
    old = os.umask(0o022)
    try:
        write_report(imported, imported / "report.html")
    finally:
        os.umask(old)
    assert (imported / "report.html").stat().st_mode & 0o777 == 0o644, "a report is made to be shared"
    page = (imported / "report.html").read_text()
    assert "parse rules disagree" in page and "Pooled over aggregators" in page
    assert "Judge checks" in page and "context shift" in page, "FedAvg's answers judged beside the base model"
