"""The study's Table 1 ships as reference data, and `fedbench leaderboard --reference` sets a user's entries beside it."""

from __future__ import annotations

import csv
import fnmatch
import io
import json
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from fedbench.harness.cli import app
from fedbench.harness.errors import FedbenchError
from fedbench.harness.results.model import build_matrix
from fedbench.harness.results.published import ReferenceView, builtin_path, load_reference, reference_view
from fedbench.harness.results.render_csv import reference_csv
from fedbench.harness.results.render_json import reference_json
from fedbench.harness.results.render_markdown import reference_markdown
from fedbench.harness.results.render_rich import reference_rich
from fedbench.harness.spec import tomllib
from fedbench.harness.store import ScoreRow, Store
from fedbench.harness.study_table import BASE_ROW
from tests.test_leaderboard import SCORES, _row

ROOT = Path(__file__).resolve().parents[1]
JUDGELM = "model=BAAI/JudgeLM-13B-v1.0, swap=True, temperature=0.2"


def _published() -> dict[tuple[str, str, str], float]:
    """The shipped CSV's rows, read with nothing but the csv module."""
    lines = [line for line in builtin_path("study").read_text().splitlines() if line and not line.startswith("#")]
    return {
        (
            BASE_ROW if r["aggregator"] == "Base" else r["aggregator"],
            r["benchmark"],
            "" if r["variant"] == "base" else r["variant"],
        ): float(r["score"])
        for r in csv.DictReader(lines)
    }


def test_the_study_table_loads_with_its_setup_and_every_published_number() -> None:
    ref = load_reference("study")
    assert (ref.model, ref.judge, ref.judge_for("vicuna"), ref.judge_for("advbench")) == (
        "Alpaca-7B",
        "JudgeLM-13B",
        "JudgeLM-13B",
        "refusal-keyword rule",
    )
    assert dict(ref.scales) == {"mt_bench_1": 10.0, "vicuna": 10.0, "advbench": 100.0}
    assert ref.benchmarks == ["advbench", "mt_bench_1", "vicuna"]
    for bench in ref.benchmarks:  # Base + 7 aggregators x DPO/KTOO/KTOR
        assert sum(b == bench for _, b, _ in ref.scores) == 22
    assert dict(ref.scores) == _published()
    assert ref.value("fedavg", "mt_bench_1", "KTOO") == 8.14
    assert ref.value("scaffold", "advbench", "KTOR") == 17.50
    assert ref.value(BASE_ROW, "advbench", "KTOR") == 9.62  # the base model has one number, whatever the column
    assert ref.value("fedavg", "preference.reward", "DPO") is None


def test_the_study_table_is_package_data_of_the_wheel() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    globs = pyproject["tool"]["setuptools"]["package-data"]["fedbench.plugins"]
    for name in ("study", "study_scores", "study_run_names"):
        shipped = builtin_path(name).relative_to((ROOT / "plugins").resolve()).as_posix()
        assert any(fnmatch.fnmatch(shipped, g) for g in globs), (shipped, globs)


def _view(extra: Sequence[ScoreRow] = ()) -> ReferenceView:
    scores = [
        replace(s, ci_low=s.score - 0.5, ci_high=s.score + 0.5) if s.subject == "dpo-original-fedavg" else s for s in SCORES
    ]
    return reference_view(build_matrix([*scores, *extra]), load_reference("study"))


def test_markdown_puts_yours_paper_and_difference_side_by_side_with_dashes_for_a_missing_side() -> None:
    text = reference_markdown(_view([replace(_row("fedavg", "kto", "redistributed", "preference.reward", 80.0), scale=100.0)]))
    assert "| aggregator | variant | yours [95% interval] | paper | difference |" in text
    assert "| fedavg | DPO | 4.00 ±0.50 | 7.84 ±0.57 | -3.84 |" in text  # yours with its interval, the paper's, yours - paper
    assert "| fedavg | KTOR | 62.5 | 12.69 | +49.8 |" in text  # AdvBench: % /100 on both sides
    assert "| Base | base | 3.00 | 7.51 ±0.56 | -4.51 |" in text
    assert "| fedprox | KTOO | - | 8.44 ±0.53 | - |" in text  # the paper has it, you did not run it
    assert "| fedavg | KTOR | 80.0 | - | - |" in text  # you have it, the paper has no such benchmark
    sections = text.split("**")
    assert [s for s in sections if "(/" in s] == [
        "mt_bench_1 (/10)",
        "vicuna (/10)",
        "advbench (/100)",
        "preference.reward (/100)",
    ]


def test_json_and_csv_carry_both_sides_and_the_difference() -> None:
    view = _view()
    found = {(e["benchmark"], e["aggregator"], e["variant"]): e for e in json.loads(reference_json(view))["entries"]}
    dpo = found[("mt_bench_1", "fedavg", "DPO")]
    assert (dpo["yours"], dpo["paper"], dpo["ci_low"], dpo["ci_high"]) == (4.0, 7.84, 3.5, 4.5)
    assert dpo["difference"] == pytest.approx(-3.84) and dpo["paper_in_interval"] is False
    assert (dpo["your_model"], dpo["your_judge"], dpo["paper_model"], dpo["paper_judge"]) == (
        "m",
        "llm",
        "Alpaca-7B",
        "JudgeLM-13B",
    )
    missing = found[("vicuna", "fedavg", "KTOO")]
    assert missing["yours"] is None and missing["difference"] is None and missing["paper"] == 8.51
    assert found[("advbench", BASE_ROW, None)]["paper_judge"] == "refusal-keyword rule"
    assert len(found) == 66  # every published entry; yours all fall on one of them
    rows = {(r["benchmark"], r["aggregator"], r["variant"]): r for r in csv.DictReader(io.StringIO(reference_csv(view)))}
    assert [rows[("mt_bench_1", "fedavg", "DPO")][k] for k in ("yours", "yours_lo", "yours_hi", "paper", "difference")] == [
        "4.00",
        "3.50",
        "4.50",
        "7.84",
        "-3.84",
    ]
    assert rows[("vicuna", "fedavg", "KTOO")]["yours"] == "" and rows[("vicuna", "fedavg", "KTOO")]["difference"] == ""


def test_the_caption_names_each_sides_model_and_judge() -> None:
    mine = [
        replace(
            _row("fedavg", "dpo", "original", "vicuna", 6.0),
            model="chavinlo/alpaca-native",
            judge="judgelm",
            judge_setting=JUDGELM,
        ),
        replace(_row("fedavg", "dpo", "original", "advbench", 20.0), model="chavinlo/alpaca-native", judge="keyword"),
    ]
    view = reference_view(build_matrix(mine), load_reference("study"))
    yours, paper = view.caption()
    assert yours == "yours: model chavinlo/alpaca-native; judge judgelm (BAAI/JudgeLM-13B-v1.0) (vicuna), keyword (advbench)"
    assert paper == (
        "paper (study, Table 1 of the KTO-vs-DPO federated fine-tuning study): model Alpaca-7B; "
        "judge JudgeLM-13B (mt_bench_1, vicuna), refusal-keyword rule (advbench)"
    )
    assert f"- {yours}" in reference_markdown(view) and f"- {paper}" in reference_markdown(view)
    assert json.loads(reference_json(view))["caption"] == [yours, paper]
    buf = io.StringIO()
    Console(file=buf, width=250).print(reference_rich(view))
    shown = buf.getvalue()
    assert yours in shown and paper in shown and "+7.5" in shown  # AdvBench 20.0 - 12.50, on /100


def test_another_papers_table_by_path_in_its_own_spelling_and_scale(tmp_path: Path) -> None:
    other = tmp_path / "other.csv"
    other.write_text(
        "# model: Llama-2-7B\n# Judge: GPT-4\n# scale.AdvBench: 1\n"
        "Aggregator,Benchmark,Variant,Score,Note\n"
        "FedAvg,MT-Bench-1,dpo,6.5,\nFedAvg,AdvBench,KTOR,0.5,a rate\nBase,Vicuna,,5.0,\n"
    )
    ref = load_reference(str(other))
    assert dict(ref.scores) == {
        ("fedavg", "mt_bench_1", "DPO"): 6.5,
        ("fedavg", "advbench", "KTOR"): 0.5,
        (BASE_ROW, "vicuna", ""): 5.0,
    }
    assert (ref.model, ref.judge, ref.source) == ("Llama-2-7B", "GPT-4", str(other))
    view = reference_view(build_matrix(SCORES), ref)
    text = reference_markdown(view)
    assert "| fedavg | KTOR | 62.5 | 50.00 | +12.5 |" in text  # the paper's rate 0.5 of 1 is 50% on fedbench's /100
    assert "| fedavg | DPO | 4.00 | 6.50 | -2.50 |" in text
    assert "the paper's advbench (/1) is shown on fedbench's scale" in view.caption()
    plain = tmp_path / "plain.csv"
    plain.write_text("aggregator,benchmark,variant,score\nfedavg,vicuna,DPO,7\n")
    unstated = reference_view(build_matrix(SCORES), load_reference(str(plain)))
    assert unstated.caption()[1] == f"paper ({plain}): model not stated; judge not stated (vicuna)"


HEADER = "# a comment\naggregator,benchmark,variant,score\n"


@pytest.mark.parametrize(
    ("body", "line", "words"),
    [
        ("fedavg,vicuna,DPO,8.03\nfedavg,vicuna,KTOO,eight\n", 4, "'eight' is not a number"),
        ("fedavg,vicuna,DPO\n", 3, "3 fields where the header has 4"),
        ("fedavg,vicuna,DPO,8.03\n\nfedavg,vicuna,dpo,8.10\n", 5, "already given on line 3"),
        ("Base,vicuna,DPO,7.5\n", 3, "the Base row has variant 'DPO'"),
        ("fedavg,vicuna,,7.5\n", 3, "has no variant"),
        ("fedavg,advbench,DPO,112.5\n# scale.advbench: 100\n", 3, "outside advbench's scale 0-100"),
        ("# scale.vicuna: ten\nfedavg,vicuna,DPO,7.5\n", 3, "scale 'ten' of vicuna is not a positive number"),
    ],
)
def test_a_malformed_table_names_the_file_and_line(tmp_path: Path, body: str, line: int, words: str) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + body)
    with pytest.raises(FedbenchError) as err:
        load_reference(str(path))
    assert err.value.problem.startswith(f"{path}, line {line}: ") and words in err.value.problem, err.value.problem
    assert err.value.fix


def test_a_missing_header_an_unknown_name_and_a_missing_file_are_explained(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("# only comments\nagg,bench,variant,score\n")
    with pytest.raises(
        FedbenchError, match=r"line 2: the header 'agg,bench,variant,score' lacks the column\(s\) aggregator, benchmark"
    ):
        load_reference(str(path))
    with pytest.raises(FedbenchError, match="Did you mean 'study'") as err:
        load_reference("studdy")
    assert "aggregator,benchmark,variant,score" in (err.value.fix or "")
    with pytest.raises(FedbenchError, match="not found"):
        load_reference(str(tmp_path / "nowhere.csv"))


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    store = Store(tmp_path / "runs" / "results.sqlite")
    for row in SCORES:
        store.put_score(row)
    store.close()
    return tmp_path / "runs"


def _cli(*args: str) -> Result:
    return CliRunner().invoke(app, ["leaderboard", *args], env={"COLUMNS": "250"})


def test_the_cli_sets_a_store_beside_the_study_in_every_format(runs: Path) -> None:
    markdown = _cli("--runs", str(runs), "--reference", "study", "--format", "markdown")
    assert markdown.exit_code == 0, markdown.output
    assert "| fedavg | KTOO | 5.50 | 8.14 ±0.57 | -2.64 |" in markdown.output and "model Alpaca-7B" in markdown.output
    data = json.loads(_cli("--runs", str(runs), "--reference", "study", "--format", "json").output)
    assert data["reference"]["model"] == "Alpaca-7B" and data["yours"]["models"] == ["m"]
    entry = next(
        e for e in data["entries"] if (e["benchmark"], e["aggregator"], e["variant"]) == ("mt_bench_1", "fedprox", "KTOR")
    )
    assert (entry["yours"], entry["paper"]) == (5.0, 8.01) and entry["difference"] == pytest.approx(-3.01)
    table = list(csv.DictReader(io.StringIO(_cli("--runs", str(runs), "--reference", "study", "--format", "csv").output)))
    assert len(table) == 66 and {"yours", "paper", "difference", "your_judge", "paper_judge"} <= set(table[0])
    rich = _cli("--runs", str(runs), "--reference", "study")
    assert rich.exit_code == 0 and "yours: model m; judge llm" in rich.output and "-4.51" in rich.output
    html = _cli("--runs", str(runs), "--reference", "study", "--format", "html")
    assert html.exit_code == 2 and "unknown format for this view 'html'" in html.output


def test_the_cli_refuses_reference_with_another_view_and_explains_a_bad_table(runs: Path, tmp_path: Path) -> None:
    for other in ("--compare", "--clients", "--baselines"):
        out = _cli("--runs", str(runs), "--reference", "study", other)
        assert out.exit_code == 2 and f"{other} and --reference are different views" in out.output, out.output
    bad = tmp_path / "bad.csv"
    bad.write_text("aggregator,benchmark,variant,score\nfedavg,vicuna,DPO,n/a\n")
    out = _cli("--runs", str(runs), "--reference", str(bad))
    assert out.exit_code == 2 and "line 2: score 'n/a' is not a number" in out.output.replace("\n", " "), out.output


def test_the_study_ships_its_per_question_scores_for_intervals_and_its_own_paired_tests() -> None:
    """The paper's numbers get intervals and Holm-corrected paired tests from the judgments it published."""
    view = reference_view(build_matrix([]), load_reference("study"))
    data = json.loads(reference_json(view))
    fedavg_dpo = next(
        e for e in data["entries"] if (e["benchmark"], e["aggregator"], e["variant"]) == ("mt_bench_1", "fedavg", "DPO")
    )
    assert fedavg_dpo["paper_ci_low"] < 7.84 < fedavg_dpo["paper_ci_high"] and fedavg_dpo["yours"] is None
    advbench = next(e for e in data["entries"] if e["benchmark"] == "advbench")
    assert advbench["paper_ci_low"] is None, "AdvBench's per-question verdicts were not published"
    tests = data["paper_comparisons"]
    assert len(tests) == 42 and {t["comparison"] for t in tests} == {"KTOO - DPO", "KTOR - DPO", "KTOR - KTOO"}
    won = [
        (t["aggregator"], t["comparison"])
        for t in tests
        if t["benchmark"] == "vicuna" and t["significant"] and t["difference"] > 0
    ]
    assert sum(c == "KTOO - DPO" for _, c in won) == 5 and sum(c == "KTOR - DPO" for _, c in won) == 2
    assert not [t for t in tests if t["benchmark"] == "mt_bench_1" and t["significant"]]
    assert "the paper's own paired comparisons" in reference_markdown(view)
