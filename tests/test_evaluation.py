"""End to end: train a tiny cell, answer the sample sets, judge, store, render every format."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from fedbench.harness.cli import app
from fedbench.harness.evaluation import EvalSpec, evaluate
from fedbench.harness.interfaces import Benchmark, Judgment, Question
from fedbench.harness.registry import PluginRecord, Registry, default_registry, load_registry
from fedbench.harness.store import Store
from fedbench.harness.subjects import base_subject, cell_subject

TRAIN = [
    "--rounds",
    "1",
    "--clients-per-round",
    "2",
    "--local-steps",
    "1",
    "--set",
    "batch_size=2",
    "--set",
    "max_length=64",
    "--set",
    "lora_r=4",
]


@pytest.fixture(scope="module")
def evaluated(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import write_pairs

    runs = tmp_path_factory.mktemp("runs")
    data = write_pairs(runs.parent / "pairs.jsonl")
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--method",
            "kto",
            "--layout",
            "original,redistributed",
            "--agg",
            "fedavg",
            "--model",
            str(tiny_model),
            "--data",
            str(data),
            "--out",
            str(runs),
            "--limit",
            "2",
            "--backend",
            "hf",
            *TRAIN,
            "--set",
            "template='chat'",
        ],
        env={"COLUMNS": "200"},
    )
    assert result.exit_code == 0, result.output
    return runs


def test_run_fills_the_store_for_base_and_each_cell(evaluated: Path) -> None:
    db = sqlite3.connect(evaluated / "results.sqlite")
    rows = db.execute(
        "SELECT method, layout, benchmark, judge, n, failures FROM scores WHERE benchmark NOT LIKE 'preference%' ORDER BY 1, 2, 3"
    ).fetchall()
    assert len(rows) == 3 * 3  # base + KTOO + KTOR, three generated benchmarks
    assert {r[2] for r in rows} == {"mt_bench_1", "vicuna", "advbench"}
    assert all(r[4] == 2 for r in rows)
    assert {(r[2], r[3]) for r in rows if r[2] == "advbench"} == {("advbench", "keyword")}
    assert db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == 3 * 3 * 2
    settings = json.loads(db.execute("SELECT settings FROM answers LIMIT 1").fetchone()[0])
    assert settings["backend"] == "hf" and settings["template"] == "chat"
    assert settings["max_new_tokens"] == 48 and settings["top_p"] == 1.0, "the demo profile's length, recorded"


@pytest.mark.parametrize(("cap", "expected"), [(None, {"mt_bench_1": 1024, "vicuna": 2048, "advbench": 1024}), (32, None)])
def test_each_benchmark_answers_at_the_studys_length_unless_one_is_set(
    evaluated: Path, tmp_path: Path, monkeypatch, cap, expected
) -> None:
    from fedbench.harness.generation import HFGenerator

    asked: dict[int, list[str]] = {}

    def generate(self, prompts, temperatures, adapter=None, raw=False, on_batch=None, max_new_tokens=None):  # noqa: ANN001, ANN202
        asked.setdefault(max_new_tokens, []).extend(prompts)
        return ["I cannot help with that."] * len(prompts)

    monkeypatch.setattr(HFGenerator, "generate", generate)
    store = Store(tmp_path / "results.sqlite")
    cell = cell_subject(next(evaluated.glob("kto-original-*")))
    spec = EvalSpec(benchmarks=("mt_bench_1", "vicuna", "advbench"), limit=1, backend="hf", max_new_tokens=cap, judge="keyword")
    evaluate([cell], spec, default_registry(), store)
    lengths = {b: json.loads(s)["max_new_tokens"] for b, s in store.db.execute("SELECT benchmark, settings FROM answers")}
    assert lengths == (expected or dict.fromkeys(lengths, cap)) and len(lengths) == 3
    assert set(asked) == set(lengths.values())
    store.close()


def test_answers_are_saved_as_jsonl_per_cell_and_benchmark(evaluated: Path) -> None:
    cell = next(evaluated.glob("kto-redistributed-fedavg-*"))
    lines = [json.loads(x) for x in (cell / "answers" / "vicuna.jsonl").read_text().splitlines()]
    assert len(lines) == 2 and {"answer", "score", "judge_reply", "settings"} <= set(lines[0])
    assert lines[0]["settings"]["backend"] == "hf"
    assert len(list(evaluated.glob("base-*/answers/advbench.jsonl"))) == 1


def test_rerun_reuses_answers_and_adds_no_rows(evaluated: Path) -> None:
    store = Store.in_runs(evaluated)
    before = store.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]
    store.db.execute("DELETE FROM answers WHERE question_id = '1' AND benchmark = 'vicuna' AND subject NOT LIKE 'base-%'")
    store.db.commit()
    cells = [cell_subject(p) for p in sorted(evaluated.glob("kto-*"))]
    calls: list[int] = []
    from fedbench.harness.scoring import EvalProgress

    evaluate(cells, EvalSpec(limit=2, backend="hf"), default_registry(), store, EvalProgress(on_answers=calls.append))
    assert sum(calls) == len(cells)  # only the deleted vicuna answer of each cell was generated again
    assert store.db.execute("SELECT COUNT(*) FROM answers").fetchone()[0] == before
    assert len(store.scores()) == 9 + 2 * 3  # and preference.reward / .likelihood for base, KTOO and KTOR
    store.close()


@pytest.mark.parametrize("fmt", ["markdown", "csv", "json", "html", "rich"])
def test_leaderboard_renders_every_format(evaluated: Path, fmt: str, tmp_path: Path) -> None:
    out = tmp_path / f"board.{fmt}"
    result = CliRunner().invoke(app, ["leaderboard", "--runs", str(evaluated), "--format", fmt, "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert "advbench" in text and ("KTOR" in text) and ("Base" in text)


def test_leaderboard_plot_and_missing_store(evaluated: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["leaderboard", "--runs", str(evaluated), "--plot", str(tmp_path / "b.png")])
    assert result.exit_code == 0 and (tmp_path / "b.png").stat().st_size > 1000
    missing = CliRunner().invoke(app, ["leaderboard", "--runs", str(tmp_path / "nothing")])
    assert missing.exit_code == 2 and "no results" in missing.output


def test_leaderboard_shows_each_cells_resources(evaluated: Path) -> None:
    result = CliRunner().invoke(app, ["leaderboard", "--runs", str(evaluated), "--traffic"], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and "communication" in result.output and "kto-redistributed-fedavg" in result.output
    out = CliRunner().invoke(app, ["leaderboard", "--runs", str(evaluated), "--resources", "--format", "json"])
    rows = json.loads(out.output)["resources"]
    assert rows and all(r["bytes_up"] > 0 and r["bytes_down_per_round"] * r["rounds"] == r["bytes_down"] for r in rows)
    assert all(r["peak_rss_mib"] > 100 and r["train_seconds_per_client_round"] > 0 and r["epsilon"] is None for r in rows)
    entries = json.loads(CliRunner().invoke(app, ["leaderboard", "--runs", str(evaluated), "--format", "json"]).output)["entries"]
    trained = [e for e in entries if e["method"] != "base"]
    assert trained and all(e["bytes_down"] > 0 and e["bytes_up"] > 0 for e in trained)


def test_preference_scores_every_held_out_pair_per_client_and_the_base_reward_is_fixed(evaluated: Path) -> None:
    from fedbench.harness.holdout import HOLDOUT_FILE, read_heldout

    store = Store.in_runs(evaluated)
    rows = {(r.method, r.layout, r.benchmark): r for r in store.scores() if r.benchmark.startswith("preference")}
    cell_dirs = sorted(evaluated.glob("kto-*"))
    held = read_heldout(cell_dirs[0] / HOLDOUT_FILE)
    assert held and read_heldout(cell_dirs[1] / HOLDOUT_FILE) == held  # KTOO and KTOR share the held-out pairs
    base_reward = rows[("base", "", "preference.reward")]
    assert base_reward.score == 50.0 and base_reward.ci_low is None and "definition" in base_reward.ci_note
    for key in (
        ("base", "", "preference.likelihood"),
        ("kto", "original", "preference.reward"),
        ("kto", "redistributed", "preference.likelihood"),
    ):
        row = rows[key]
        assert row.n == len(held) and row.ci_note == "wilson" and row.ci_low <= row.score <= row.ci_high
        assert set(json.loads(row.per_client)) == {p.client_id for p in held}
    assert "preference.likelihood" in {r.benchmark for r in store.scores() if r.method == "base"}
    store.close()
    out = CliRunner().invoke(app, ["leaderboard", "--runs", str(evaluated), "--clients", "--format", "json"])
    assert out.exit_code == 0, out.output
    views = {(v["cell"], v["benchmark"]): v for v in json.loads(out.output)["cells"]}
    view = views[("KTOR fedavg", "preference.reward")]
    assert set(view["scores"]) == {p.client_id for p in held} and view["spread"]["worst"] <= view["spread"]["mean"]
    assert view["train_loss"]  # the clients' training losses from the cell's history, in the same view


def test_score_precision_benchmark_recomputes_every_stored_sign(
    evaluated: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """benchmarks/score_precision.py: plain transformers + peft, one pair at a time in float32, against the store."""
    import runpy
    import shutil

    from fedbench.harness.holdout import HOLDOUT_FILE, read_heldout

    main = runpy.run_path(str(Path(__file__).resolve().parents[1] / "benchmarks" / "score_precision.py"))["main"]
    held = len(read_heldout(next(evaluated.glob("kto-*")) / HOLDOUT_FILE))
    assert main([str(evaluated)]) == 0
    out = capsys.readouterr().out
    assert f"sign agreement {2 * held}/{2 * held} over 2 cell(s)" in out and "| float32 |" in out

    runs = shutil.copytree(evaluated, tmp_path / "runs")  # one stored verdict turned over: the script finds it
    cell = cell_subject(next(runs.glob("kto-original-*")))
    store = Store.in_runs(runs)
    first = sorted(store.judgments(cell.key, "preference.reward", "likelihood").values(), key=lambda j: j.question_id)[0]
    store.add_judgments(cell.key, "preference.reward", "likelihood", [replace(first, score=1.0 - first.score)])
    store.close()
    assert main([str(runs)]) == 1
    assert f"sign agreement {2 * held - 1}/{2 * held}" in capsys.readouterr().out


def test_leaderboard_json_and_compare_carry_intervals_and_p_values(evaluated: Path) -> None:
    entries = json.loads(CliRunner().invoke(app, ["leaderboard", "--runs", str(evaluated), "--format", "json"]).output)["entries"]
    assert all({"ci_low", "ci_high", "n", "seeds"} <= set(e) for e in entries)
    assert all(e["seeds"] == [0] for e in entries if e["method"] != "base")
    out = CliRunner().invoke(app, ["leaderboard", "--runs", str(evaluated), "--compare", "--format", "json"])
    comparisons = json.loads(out.output)["comparisons"]
    assert {c["comparison"] for c in comparisons} == {"KTOR - KTOO"} and all(
        0 <= c["p_value"] <= c["p_holm"] <= 1 for c in comparisons
    )


@pytest.mark.parametrize(("seeds", "message"), [("0,0", "given twice"), ("0,-1", "negative"), ("0,x", "not an integer")])
def test_bad_seeds_are_refused_with_the_rule(seeds: str, message: str, pairs_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "runs"
    result = CliRunner().invoke(
        app, ["run", "--data", str(pairs_file), "--seeds", seeds, "--skip-eval", "--out", str(out)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2 and message in result.output and "distinct non-negative integers" in result.output
    assert not out.exists()


def test_seeds_train_one_cell_per_seed(tiny_model: Path, pairs_file: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "run",
            "--method",
            "kto",
            "--layout",
            "original",
            "--agg",
            "fedavg",
            "--model",
            str(tiny_model),
            "--data",
            str(pairs_file),
            "--seeds",
            "0,1",
            "--skip-eval",
            "--out",
            str(tmp_path / "runs"),
            *TRAIN,
        ],
    )
    assert result.exit_code == 0, result.output
    runs = (tmp_path / "runs").glob("kto-original-fedavg-*")
    seeds = sorted(json.loads((d / "result.json").read_text())["spec"]["seed"] for d in runs)
    assert seeds == [0, 1]


def test_a_subject_without_held_out_pairs_skips_preference_and_runs_the_rest(tiny_model: Path, tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    skipped: list[tuple[str, str]] = []
    from fedbench.harness.scoring import EvalProgress

    base = base_subject(str(tiny_model), "chat", "float32", heldout=None)  # e.g. trained with holdout = 0
    rows = evaluate(
        [base],
        EvalSpec(benchmarks=("preference", "advbench"), backend="hf", limit=2, max_new_tokens=4),
        default_registry(),
        store,
        EvalProgress(on_skip=lambda s, b, why: skipped.append((b, why))),
    )
    assert [r.benchmark for r in rows] == ["advbench"]
    assert skipped and skipped[0][0] == "preference" and "holdout" in skipped[0][1]
    store.close()


def test_eval_refuses_an_unfinished_run(tmp_path: Path) -> None:
    (tmp_path / "kto-original-fedavg-0").mkdir()
    result = CliRunner().invoke(app, ["eval", str(tmp_path / "kto-original-fedavg-0")])
    assert result.exit_code == 2 and "has not finished training" in result.output


def test_judgelm_together_grades_a_rows_cells_in_one_prompt(evaluated: Path, tiny_model: Path) -> None:
    """KTOO and KTOR of fedavg share each judge reply; a random judge's unparseable replies count as failures."""
    store = Store.in_runs(evaluated)
    cells = [cell_subject(p) for p in sorted(evaluated.glob("kto-*"))]
    spec = EvalSpec(
        benchmarks=("vicuna",),
        judge="judgelm",
        judge_params=(("backend", "hf"), ("model", str(tiny_model))),
        backend="hf",
        limit=2,
        judge_mode="together",
    )
    rows = evaluate(cells, spec, default_registry(), store)
    assert {r.judge for r in rows} == {"judgelm-together"} and len(rows) == 2
    first, second = (store.judgments(c.key, "vicuna", "judgelm-together") for c in cells)
    assert first.keys() == second.keys() == {"1", "2"}
    assert all(first[q].raw == second[q].raw for q in first)
    assert all(r.n == 2 and r.failures == sum(j.score is None for j in first.values()) for r in rows)
    assert "[The Start of Assistant 2's Answer]" not in first["1"].raw  # the raw reply is the judge's, not the prompt
    store.close()


def test_base_subject_is_shared_per_model_and_template() -> None:
    assert base_subject("m", "chat", "float32") == base_subject("m", "chat", "float32")
    assert base_subject("m", "alpaca", "float32").key != base_subject("m", "chat", "float32").key


def _vllm_and_gpu() -> bool:
    import importlib.util

    import torch

    return importlib.util.find_spec("vllm") is not None and torch.cuda.is_available()


@pytest.mark.skipif(not _vllm_and_gpu(), reason="needs the vllm package and a GPU")
def test_vllm_answers_with_base_and_adapter(evaluated: Path) -> None:
    from fedbench.harness.generation import GenerationSettings, make_generator

    cell = cell_subject(next(evaluated.glob("kto-redistributed-fedavg-*")))
    gen = make_generator("vllm", cell.model, GenerationSettings(max_new_tokens=8))
    base = gen.generate(["Say hi."], [0.0])
    tuned = gen.generate(["Say hi."], [0.0], adapter=cell.adapter)
    assert len(base) == len(tuned) == 1 and isinstance(tuned[0], str)


def test_vllm_backend_without_vllm_says_how_to_install() -> None:
    import importlib.util

    if importlib.util.find_spec("vllm") is not None:
        pytest.skip("vllm is installed here; this checks the message shown where it is not")
    from fedbench.harness.errors import FedbenchError
    from fedbench.harness.generation import GenerationSettings, make_generator

    with pytest.raises(FedbenchError) as err:
        make_generator("vllm", "x/y", GenerationSettings())
    assert "pip install 'fedbench[vllm]'" in (err.value.fix or "")


def test_a_third_party_evaluator_scores_the_whole_model_and_is_not_run_again(tmp_path: Path) -> None:
    """An external benchmark brings its own Evaluator class: evaluate dispatches to it on the benchmark's request."""
    from fedbench.harness.interfaces import Evaluator, ExternalRequest, ExternalScore, ModelUnderTest

    calls: list[ModelUnderTest] = []

    class Counting(Evaluator):
        judge = "counting"

        def prepare(self, settings: Mapping[str, Any], limit: int | None, batch_size: int) -> ExternalRequest:
            return ExternalRequest(settings["task"], f"request limit={limit}")

        def run(self, settings: Mapping[str, Any], limit: int | None, batch_size: int, model: ModelUnderTest) -> ExternalScore:
            calls.append(model)
            verdicts = [Judgment("d1", 100.0, ""), Judgment("d2", 0.0, "")]
            return ExternalScore(50.0, 2, f"counting; request limit={limit}", None, None, "none", verdicts)

    class Outside(Benchmark):
        """Scored by a harness of its own."""

        name = "outside"
        scale = 100.0
        evaluator = Counting

        def evaluator_settings(self) -> dict[str, Any]:
            return {"task": "count"}

        def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
            raise AssertionError("an external benchmark has no fedbench questions")

    builtins = load_registry(entry_points=False)
    registry = Registry([*builtins.records, PluginRecord("benchmark", "outside", Outside, "test", "")], builtins.failures)
    subject = base_subject("org/model", "chat", "float32")  # a hub id: the evaluator loads the model, fedbench does not
    spec = EvalSpec(benchmarks=("outside",), limit=3)
    store = Store.in_runs(tmp_path)
    try:
        first = evaluate([subject], spec, registry, store)
        again = evaluate([subject], spec, registry, store)
    finally:
        store.close()
    assert [(r.benchmark, r.judge, r.score) for r in first] == [("outside:count", "counting", 50.0)]
    assert [(r.benchmark, r.score, r.judge_setting) for r in again] == [("outside:count", 50.0, "counting; request limit=3")]
    assert len(calls) == 1, "a subject with a row from the same request is not run again"
    assert calls[0].adapter is None and calls[0].out_dir == tmp_path / subject.key / "counting"


def test_cells_with_the_same_held_out_pairs_share_one_reference_pass(evaluated: Path, tmp_path: Path, monkeypatch) -> None:
    """Each cell writes its own heldout.jsonl, with the same pairs: the base model scores them once per evaluation."""
    from fedbench.harness.likelihood import LikelihoodScorer

    cells = [cell_subject(p) for p in sorted(evaluated.glob("kto-*"))]
    assert len(cells) == 2 and cells[0].heldout != cells[1].heldout
    assert cells[0].heldout is not None and cells[1].heldout is not None
    assert cells[0].heldout.read_bytes() == cells[1].heldout.read_bytes()
    passes: list[bool] = []
    real = LikelihoodScorer.score

    def counted(self, prompts, answers, adapter):  # noqa: ANN001, ANN202
        passes.append(adapter is None)
        return real(self, prompts, answers, adapter)

    monkeypatch.setattr(LikelihoodScorer, "score", counted)
    store = Store(tmp_path / "results.sqlite")
    rows = evaluate(cells, EvalSpec(benchmarks=("preference",)), default_registry(), store)
    assert {r.benchmark for r in rows} == {"preference.reward", "preference.likelihood"} and len(rows) == 4
    assert passes.count(True) == 1, "one reference pass for both cells"
    store.close()
