"""The lm-evaluation-harness bridge: `lm_eval:<task>` benchmarks scored by lm-eval itself, stored like any other.

Offline: a small multiple-choice task written here as local JSONL plus an lm-eval task YAML (found
through the benchmark parameter include_path), run on the tiny model for the base model and one
LoRA adapter.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fedbench.harness import lm_eval_bridge as lmeval
from fedbench.harness.errors import FedbenchError
from fedbench.harness.evaluation import EvalSpec, create_benchmark, evaluate
from fedbench.harness.registry import default_registry
from fedbench.harness.results.model import build_matrix
from fedbench.harness.store import Store
from fedbench.harness.subjects import Subject, base_subject

TASK = "fedbench_tiny_mc"
BENCH = f"lm_eval:{TASK}"
UNREACHABLE = "fedbench_unreachable"
DOCS = [
    {"question": "What is 2 plus 2?", "choices": ["3", "4", "5"], "answer": 1},
    {"question": "Which one is a colour?", "choices": ["red", "table", "seven"], "answer": 0},
    {"question": "What do cats say?", "choices": ["woof", "moo", "meow"], "answer": 2},
    {"question": "What is the capital of France?", "choices": ["Paris", "Rome", "Oslo"], "answer": 0},
    {"question": "How many legs has a spider?", "choices": ["six", "eight", "ten"], "answer": 1},
    {"question": "Which is the largest?", "choices": ["ant", "mouse", "elephant"], "answer": 2},
]


def write_task(folder: Path, name: str = TASK, dataset: str | None = None) -> Path:
    """An lm-eval multiple-choice task over local JSONL (or over the hub data set ``dataset``), in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    data = folder / f"{name}.jsonl"
    data.write_text("".join(json.dumps(d) + "\n" for d in DOCS))
    local = f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    test: {data}\n"
    source = f"dataset_path: {dataset}\n" if dataset else local
    body = """test_split: test
output_type: multiple_choice
doc_to_text: "Question: {{question}}\\nAnswer:"
doc_to_choice: choices
doc_to_target: answer
metric_list:
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 3.0
"""
    (folder / f"{name}.yaml").write_text(f"task: {name}\n" + source + body)
    return folder


def write_adapter(model_dir: Path, target: Path) -> Path:
    """A fresh LoRA adapter with random (non-zero) weights, saved as PEFT saves a cell's: what a trained cell leaves."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False, task_type="CAUSAL_LM")
    get_peft_model(model, config).save_pretrained(target)
    return target


@pytest.fixture(scope="module")
def tasks(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One include_path for every test: lm-eval indexes all of its own task YAMLs once per folder (seconds)."""
    pytest.importorskip("lm_eval")
    folder = write_task(tmp_path_factory.mktemp("lm_eval_tasks"))
    return write_task(folder, UNREACHABLE, dataset="fedbench-offline/no-such-dataset")


@pytest.fixture(scope="module")
def scored(tiny_model: Path, tasks: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Subject], EvalSpec]:
    runs = tmp_path_factory.mktemp("lm_eval") / "runs"
    run_dir = runs / "cell"
    base = base_subject(str(tiny_model), "chat", "float32")
    adapter = write_adapter(tiny_model, run_dir / "adapter")
    cell = Subject("cell-key", str(tiny_model), "chat", "float32", adapter, "dpo", "original", "fedavg")
    spec = EvalSpec(benchmarks=(BENCH,), benchmark_params=((BENCH, {"include_path": str(tasks)}),), batch_size=4)
    store = Store.in_runs(runs)
    try:
        evaluate([base, cell], spec, default_registry(), store)
    finally:
        store.close()
    return runs, [base, cell], spec


def test_base_model_and_adapter_get_a_row_each_from_lm_eval(scored: tuple[Path, list[Subject], EvalSpec]) -> None:
    runs, subjects, _ = scored
    store = Store.in_runs(runs)
    rows = {r.subject: r for r in store.scores()}
    assert set(rows) == {s.key for s in subjects}
    for subject in subjects:
        row = rows[subject.key]
        assert (row.benchmark, row.judge, row.scale, row.n, row.failures) == (BENCH, "lm_eval", 100.0, len(DOCS), 0)
        assert row.method == subject.method and row.aggregator == subject.aggregator
        assert row.score is not None and 0.0 <= row.score <= 100.0
        assert row.ci_low is not None and row.ci_high is not None
        assert 0.0 <= row.ci_low <= row.score <= row.ci_high <= 100.0
        assert f"{TASK} version 3.0, acc (none), 0-shot, lm-eval " in row.judge_setting
        # lm-eval's per-document accuracies are stored as the row's judgments: their mean is its score
        verdicts = store.question_scores(subject.key, BENCH, "lm_eval")
        assert len(verdicts) == len(DOCS) and set(verdicts.values()) <= {0.0, 1.0}
        assert sum(verdicts.values()) / len(DOCS) * 100 == pytest.approx(row.score)
    # the cell was scored with its adapter: lm-eval's log-likelihoods (kept in the judgments' raw text) differ from the base's
    base, cell = (store.judgments(s.key, BENCH, "lm_eval") for s in subjects)
    assert base.keys() == cell.keys() and any(base[k].raw != cell[k].raw for k in base)
    store.close()


def test_lm_eval_keeps_its_per_document_outputs_in_the_run_directories(scored: tuple[Path, list[Subject], EvalSpec]) -> None:
    runs, (base, cell), _ = scored
    assert cell.adapter is not None
    for folder in (runs / base.key, cell.adapter.parent):
        lines = [json.loads(x) for x in (folder / "lm_eval" / f"{TASK}.jsonl").read_text().splitlines()]
        assert len(lines) == len(DOCS)
        assert {x["task"] for x in lines} == {TASK} and sorted(x["doc_id"] for x in lines) == list(range(len(DOCS)))
        assert all("acc" in x and "resps" in x and "arguments" in x for x in lines)


def test_a_finished_subject_and_task_is_not_run_again(
    scored: tuple[Path, list[Subject], EvalSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs, subjects, spec = scored

    def refuse(*args: object) -> None:
        raise AssertionError("lm-eval ran again for a finished subject")

    monkeypatch.setattr(lmeval, "run_task", refuse)
    store = Store.in_runs(runs)
    before = {r.subject: r for r in store.scores()}
    again = evaluate(subjects, spec, default_registry(), store)
    assert {r.subject: r.score for r in again} == {k: r.score for k, r in before.items()}
    store.close()


def test_the_leaderboard_shows_lm_eval_as_a_column_group(scored: tuple[Path, list[Subject], EvalSpec]) -> None:
    runs, _, _ = scored
    store = Store.in_runs(runs)
    matrix = build_matrix(store.scores(), questions=lambda r: store.question_scores(r.subject, r.benchmark, r.judge))
    assert BENCH in matrix.benchmarks
    base, dpo = matrix.entry("Base", BENCH, ""), matrix.entry("fedavg", BENCH, "DPO")
    assert base is not None and dpo is not None and base.scale == dpo.scale == 100.0
    assert base.ci_low is not None and dpo.ci_low is not None  # one seed: lm-eval's interval, as stored
    store.close()


def test_an_unreachable_data_set_names_itself_and_the_local_way(tasks: Path) -> None:
    run = lmeval.TaskRun(UNREACHABLE, include_path=str(tasks))
    with pytest.raises(FedbenchError) as err:
        lmeval.fetch_data(lmeval.task_manager(run.include_path), run)
    assert "fedbench-offline/no-such-dataset" in err.value.problem
    assert err.value.fix is not None
    assert "include_path" in err.value.fix and "HF_DATASETS" in err.value.fix and f"lm_eval:{UNREACHABLE}" in err.value.fix


def test_an_unknown_task_is_refused_before_any_model_loads(tasks: Path) -> None:
    with pytest.raises(FedbenchError, match="knows no task or group 'fedbench_tiny_mq'.*Did you mean 'fedbench_tiny_mc'"):
        lmeval.check_task(lmeval.task_manager(str(tasks)), "fedbench_tiny_mq")


def test_lm_eval_colon_task_creates_the_plugin_with_its_task_and_parameters(tmp_path: Path) -> None:
    pytest.importorskip("lm_eval")
    registry = default_registry()
    bench = create_benchmark(registry, "lm_eval:mmlu", {"num_fewshot": 5, "include_path": str(tmp_path)})
    assert bench.evaluator == "lm_eval" and bench.name == "lm_eval"
    run = lmeval.TaskRun.from_settings(bench.evaluator_settings(), limit=7, batch_size=3)
    assert (run.task, run.num_fewshot, run.limit, run.batch_size, run.include_path) == ("mmlu", 5, 7, 3, str(tmp_path.resolve()))
    with pytest.raises(FedbenchError, match="needs an lm-eval task"):
        create_benchmark(registry, "lm_eval", {})
    with pytest.raises(FedbenchError, match="does not accept parameters"):
        create_benchmark(registry, "vicuna:mmlu", {})
    assert create_benchmark(registry, "vicuna", {}).evaluator is None


def _results(value: float = 0.25, stderr: object = 0.2, **extra: object) -> dict[str, object]:
    samples = [{"doc_id": i, "filter": "none", "acc": float(i < 1), "target": 0, "filtered_resps": []} for i in range(4)]
    return {
        "results": {"t": {"alias": "t", "acc,none": value, "acc_stderr,none": stderr, "acc_norm,none": 0.5}},
        "versions": {"t": 2.0},
        "n-shot": {"t": 5},
        "higher_is_better": {"t": {"acc": True, "acc_norm": True}},
        "n-samples": {"t": {"original": 10, "effective": 4}},
        "samples": {"t": samples},
        "lm_eval_version": "0.4.x",
    } | extra


def test_the_interval_is_lm_evals_standard_error_clipped_to_the_scale() -> None:
    score = lmeval.summarize(_results(), lmeval.TaskRun("t"))
    assert (score.score, score.n) == (25.0, 4)
    assert score.ci_low == 0.0 and score.ci_high == pytest.approx(25.0 + 1.96 * 20.0)
    assert score.setting.startswith("t version 2.0, acc (none), 5-shot, lm-eval 0.4.x; request num_fewshot=None")
    assert [j.score for j in score.verdicts] == [1.0, 0.0, 0.0, 0.0]
    assert lmeval.TaskRun("t").done(score.setting) and not lmeval.TaskRun("t", num_fewshot=0).done(score.setting)
    no_error = lmeval.summarize(_results(stderr="N/A"), lmeval.TaskRun("t"))
    assert no_error.ci_low is None and "no standard error" in no_error.ci_note


def test_the_stored_metric_can_be_chosen_and_must_be_a_rate() -> None:
    chosen = lmeval.summarize(_results(), lmeval.TaskRun("t", metric="acc_norm"))
    assert chosen.score == 50.0 and chosen.verdicts == []  # no per-document acc_norm in the samples: none stored
    with pytest.raises(FedbenchError, match="no metric 'acc_nrom'.*Did you mean"):
        lmeval.summarize(_results(), lmeval.TaskRun("t", metric="acc_nrom"))
    perplexity = _results()
    perplexity["results"] = {"t": {"word_perplexity,none": 31.2}}
    with pytest.raises(FedbenchError, match="not a share of documents"):
        lmeval.summarize(perplexity, lmeval.TaskRun("t"))
    with pytest.raises(FedbenchError, match="no combined score for 'tag'"):
        lmeval.summarize(_results(), lmeval.TaskRun("tag"))


def test_per_document_values_are_stored_only_when_their_mean_is_the_score() -> None:
    corpus_level = lmeval.summarize(_results(value=0.5), lmeval.TaskRun("t"))  # e.g. F1 over the corpus
    assert corpus_level.score == 50.0 and corpus_level.verdicts == []


def test_the_backend_decides_how_the_adapter_reaches_lm_eval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    adapter = tmp_path / "adapter"
    adapter.mkdir()
    config = {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]}
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    assert lmeval.model_request("hf", "/m", adapter, "float32") == (
        "hf",
        {"pretrained": "/m", "dtype": "float32", "peft": str(adapter)},
    )
    assert lmeval.model_request("hf", "/m", None, "bfloat16") == ("hf", {"pretrained": "/m", "dtype": "bfloat16"})
    real = importlib.util.find_spec
    if real("vllm") is None:
        with pytest.raises(FedbenchError, match="vLLM is not installed"):
            lmeval.model_request("vllm", "/m", adapter, "float32")
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "vllm" else real(name, *a))
    name, args = lmeval.model_request("vllm", "/m", adapter, "bfloat16")
    assert name == "vllm" and args == {
        "pretrained": "/m",
        "dtype": "bfloat16",
        "lora_local_path": str(adapter),
        "max_lora_rank": 8,
    }
    (adapter / "adapter_config.json").write_text(json.dumps(config | {"r": 24}))
    assert lmeval.model_request("vllm", "/m", adapter, "bfloat16")[1]["max_lora_rank"] == 32, (
        "the smallest rank vLLM takes that fits"
    )
    with pytest.raises(FedbenchError, match="backend 'tpu'"):
        lmeval.model_request("tpu", "/m", None, "float32")
