"""Bridge to lm-evaluation-harness: closed-ended benchmarks (MMLU, GSM8K, ARC, ...) scored by lm-eval itself.

Why a bridge and not fedbench's own answer-and-judge loop: a closed-ended score is comparable with
published numbers only when the prompts, few-shot examples, answer extraction and metric are exactly
lm-eval's. So fedbench copies none of them. Each subject (the base model, each cell's adapter) goes
through ``lm_eval.simple_evaluate`` with lm-eval's HF backend, and fedbench adds only what lm-eval
leaves to its caller: the local model directory and adapter, one store row per subject and task (the
interval from lm-eval's standard error, the per-document verdicts for seed pooling and paired
comparisons), resuming, and an error that says how to get a task's data when the hub is out of reach.

lm-eval is an optional dependency (``pip install 'fedbench[lmeval]'``), imported here only when a task runs.
"""

from __future__ import annotations

import gc
import json
import math
import numbers
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedbench.harness.errors import FedbenchError, did_you_mean
from fedbench.harness.interfaces import Evaluator, ExternalRequest, ExternalScore, Judgment, ModelUnderTest

EVALUATOR = "lm_eval"
"""The name a benchmark gives this module's evaluator (``Benchmark.evaluator = "lm_eval"``)."""
JUDGE = "lm_eval"
"""The judge column of lm-eval's rows: the score is lm-eval's metric, no judge model is involved."""
Z95 = 1.96
NOT_RATES = frozenset({"perplexity", "word_perplexity", "byte_perplexity", "bits_per_byte", "bleu", "chrf", "ter"})
"""lm-eval metrics that are not a share of documents in [0, 1]: fedbench stores lm-eval scores as rates on /100."""
DATA_FIX = (
    "fetch the data once where the hub is reachable (run this benchmark there, or datasets.load_dataset(...) with the "
    "task's dataset_path and dataset_name) and copy the Hugging Face datasets cache (HF_DATASETS_CACHE, by default "
    "~/.cache/huggingface/datasets) here, with HF_DATASETS_OFFLINE=1; or save the data as local files and write a task "
    "YAML of your own for them (dataset_path: json or parquet, dataset_kwargs: {{data_files: ...}}) in a folder given "
    'as the benchmark parameter include_path: benchmark_params = {{ "lm_eval:{task}" = {{ include_path = "DIR" }} }}'
)


@dataclass(frozen=True)
class TaskRun:
    """One lm-eval task or group with the options that change its score, and how to run it."""

    task: str
    num_fewshot: int | None = None
    limit: int | float | None = None
    metric: str | None = None
    include_path: str | None = None
    apply_chat_template: bool = False
    gen_kwargs: Mapping[str, Any] | None = None
    batch_size: int | str = 16
    device: str | None = None

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any], limit: int | None = None, batch_size: int = 16) -> TaskRun:
        """From a plugin's ``Benchmark.evaluator_settings()``; the evaluation's ``limit`` and ``batch_size`` fill unset ones."""
        unknown = sorted(set(settings) - set(cls.__dataclass_fields__))
        if unknown or not settings.get("task"):
            raise FedbenchError(
                f"lm-eval settings {dict(settings)} name no task or unknown options {unknown}",
                f"a benchmark with evaluator 'lm_eval' returns from evaluator_settings() a task and some of: "
                f"{', '.join(cls.__dataclass_fields__)}",
            )
        values = dict(settings)
        values["limit"] = limit if values.get("limit") is None else values["limit"]
        values["batch_size"] = batch_size if values.get("batch_size") is None else values["batch_size"]
        return cls(**values)

    @property
    def request(self) -> str:
        """The options that change the score, ending every row's setting: a stored row with another request is run again."""
        gen = None if not self.gen_kwargs else dict(sorted(self.gen_kwargs.items()))
        return (
            f"request num_fewshot={self.num_fewshot}, limit={self.limit}, metric={self.metric}, "
            f"chat_template={self.apply_chat_template}, gen_kwargs={gen}, include_path={self.include_path}"
        )

    def done(self, setting: str) -> bool:
        """Whether a stored row's setting comes from this same request (then the subject is not run again)."""
        return ExternalRequest(self.task, self.request).done(setting)

    @property
    def samples_file(self) -> str:
        """``<task>.jsonl``: the file lm-eval's per-document outputs are kept in, under the subject's ``lm_eval/`` folder."""
        return self.task.replace("/", "_").replace(os.sep, "_") + ".jsonl"


class LmEvalEvaluator(Evaluator):
    """lm-evaluation-harness: a benchmark's :meth:`~Benchmark.evaluator_settings` name a task and its options."""

    judge = JUDGE

    def prepare(self, settings: Mapping[str, Any], limit: int | None, batch_size: int) -> ExternalRequest:
        run = TaskRun.from_settings(settings, limit, batch_size)
        return ExternalRequest(run.task, run.request)  # from_settings refuses a missing task or unknown options

    def run(self, settings: Mapping[str, Any], limit: int | None, batch_size: int, model: ModelUnderTest) -> ExternalScore:
        run = TaskRun.from_settings(settings, limit, batch_size)
        return run_task(run, model.model_dir, model.adapter, model.dtype, model.out_dir, model.backend)


def run_task(
    run: TaskRun, model_dir: str, adapter: Path | None, dtype: str, samples_dir: Path, backend: str = "hf"
) -> ExternalScore:
    """Score one subject on one task with lm-eval's evaluator; its per-document outputs go to ``samples_dir/<task>.jsonl``.

    The task is built once before any model loads, so an unknown name or a data set out of reach fails
    fast, with what to do. The metric, its standard error and the per-document records are lm-eval's.
    ``backend``: the evaluation's (``hf``, ``vllm`` or ``auto``: vLLM where it imports and a GPU is present).
    """
    import lm_eval

    manager = task_manager(run.include_path)
    check_task(manager, run.task)
    fetch_data(manager, run)
    results = lm_eval.simple_evaluate(
        model=lm_model(backend, model_dir, adapter, dtype, run.batch_size, run.device or default_device()),
        tasks=[run.task],
        num_fewshot=run.num_fewshot,
        limit=run.limit,
        log_samples=True,
        task_manager=manager,
        apply_chat_template=run.apply_chat_template,
        gen_kwargs=dict(run.gen_kwargs) if run.gen_kwargs else None,
    )
    if results is None:  # only a non-zero rank of a distributed launch gets None
        raise FedbenchError("lm-eval returned no results in this process", "run fedbench's evaluation as a single process")
    write_samples(results.get("samples") or {}, samples_dir / run.samples_file)
    return summarize(results, run)


_MANAGERS: dict[str | None, Any] = {}


def task_manager(include_path: str | None) -> Any:
    """lm-eval's index of its own tasks plus those in ``include_path``, built once per folder (it reads every task YAML)."""
    if include_path not in _MANAGERS:
        from lm_eval.tasks import TaskManager

        _MANAGERS[include_path] = TaskManager(include_path=include_path)
    return _MANAGERS[include_path]


def check_task(manager: Any, task: str) -> None:
    """Refuse a name lm-eval does not know, and a tag (a list of tasks without a combined score), before any model loads."""
    known = list(manager.all_tasks)
    if task not in known:
        raise FedbenchError(
            f"lm-eval knows no task or group '{task}'.{did_you_mean(task, known)}",
            "list lm-eval's tasks with `lm-eval ls tasks`; for a task of your own, put its YAML in a folder given as "
            f'the benchmark parameter include_path: benchmark_params = {{ "lm_eval:{task}" = {{ include_path = "DIR" }} }}',
        )
    if task in set(getattr(manager, "all_tags", ())) and task not in set(manager.all_groups):
        members = _tag_members(manager, task)
        listed = ",".join(f"lm_eval:{m}" for m in members[:8]) + (",..." if len(members) > 8 else "")
        raise FedbenchError(
            f"'{task}' is an lm-eval tag: a list of {len(members) or 'several'} tasks without a combined score",
            f"name its tasks one by one (--benchmarks {listed or 'lm_eval:<task>,...'}), or a group that reports one",
        )


_FETCHED: set[tuple[str, str | None]] = set()


def fetch_data(manager: Any, run: TaskRun) -> None:
    """Build the task once per process, which makes lm-eval download its data: a data set out of reach fails here, with a fix."""
    key = (run.task, run.include_path)
    if key in _FETCHED:
        return
    try:
        load = getattr(manager, "load", None)
        if callable(load):
            load([run.task])
        else:  # lm-eval before TaskManager.load
            from lm_eval.tasks import get_task_dict

            get_task_dict([run.task], manager)
    except Exception as err:  # lm-eval and datasets raise many kinds; all of them mean the task cannot be built
        sets = dataset_names(manager, run.task)
        named = f" (data: {'; '.join(sets[:3])}{'; and others' if len(sets) > 3 else ''})" if sets else ""
        detail = (str(err).strip().splitlines() or [""])[0][:300]
        problem = f"lm-eval could not build task '{run.task}'{named}: {type(err).__name__}: {detail}"
        if _data_problem(err):
            raise FedbenchError(problem, DATA_FIX.format(task=run.task)) from err
        raise FedbenchError(problem, "check the task's YAML (lm-eval's error above names what it could not read)") from err
    _FETCHED.add(key)


def _data_problem(err: BaseException) -> bool:
    """Whether an error is about reaching or finding data (hub offline, no network, files missing), not a broken task."""
    for e in (err, err.__cause__, err.__context__):
        if e is None:
            continue
        library = type(e).__module__.split(".")[0]
        if isinstance(e, (OSError, TimeoutError)) or library in ("datasets", "huggingface_hub", "requests", "httpx", "urllib3"):
            return True
    return False


def dataset_names(manager: Any, task: str) -> list[str]:
    """The data sets a task (or every task of a group) reads, from lm-eval's task index: ``cais/mmlu (57 configurations)``.

    Best effort, since the index's layout differs between lm-eval releases: the names only go into a message.
    """
    configs: dict[str, list[str]] = {}
    todo, seen = [task], set[str]()
    try:
        while todo and len(seen) < 1000:
            name = todo.pop(0)
            if name in seen:
                continue
            seen.add(name)
            config = _config(manager, name)
            if config is None:
                todo += _tag_members(manager, name)
                continue
            if path := config.get("dataset_path"):
                files = (config.get("dataset_kwargs") or {}).get("data_files")
                names = configs.setdefault(str(path) + (f" files {files}" if files else ""), [])
                if config.get("dataset_name") and config["dataset_name"] not in names:
                    names.append(str(config["dataset_name"]))
            children = config["task"] if isinstance(config.get("task"), list) else []
            todo += [c if isinstance(c, str) else str(c.get("task", "")) for c in children if isinstance(c, (str, dict))]
    except Exception:  # the index differs between releases: a message without the names is still right
        pass
    return [
        path + ("" if not names else f" ({names[0]})" if len(names) == 1 else f" ({len(names)} configurations)")
        for path, names in configs.items()
    ]


def _config(manager: Any, name: str) -> dict[str, Any] | None:
    entry = manager.task_index.get(name)
    config = getattr(entry, "cfg", None)
    if config is None and isinstance(entry, dict) and isinstance(entry.get("yaml_path"), (str, Path)):
        from lm_eval.utils import load_yaml_config

        config = load_yaml_config(yaml_path=str(entry["yaml_path"]), mode="simple")
    return config if isinstance(config, dict) else None


def _tag_members(manager: Any, tag: str) -> list[str]:
    try:
        return sorted(n for n, e in manager.task_index.items() if tag in (getattr(e, "tags", None) or ()))
    except Exception:  # older index layout
        return []


def default_device() -> str:
    """Where lm-eval runs the model: its HF backend defaults to ``cuda`` even on a machine without one."""
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


_MODEL: dict[tuple[Any, ...], Any] = {}


VLLM_LORA_RANKS = (8, 16, 32, 64, 128, 256)
"""The LoRA ranks vLLM accepts for ``max_lora_rank``."""


def model_request(backend: str, model_dir: str, adapter: Path | None, dtype: str) -> tuple[str, dict[str, Any]]:
    """lm-eval's backend name and model arguments for one subject: the HF backend loads the adapter with PEFT; the vLLM
    backend serves the base model with the adapter as a LoRA request (``lora_local_path``), rank room to fit."""
    if backend == "auto":
        import importlib.util

        import torch

        backend = "vllm" if importlib.util.find_spec("vllm") and torch.cuda.is_available() else "hf"
    if backend == "hf":
        return "hf", {"pretrained": model_dir, "dtype": dtype} | ({} if adapter is None else {"peft": str(adapter)})
    if backend != "vllm":
        raise FedbenchError(f"lm-eval cannot run on the backend '{backend}'", "use --backend hf, vllm or auto")
    import importlib.util

    if importlib.util.find_spec("vllm") is None:
        raise FedbenchError("--backend vllm, but vLLM is not installed", "pip install 'fedbench[vllm]' on a GPU machine")
    args: dict[str, Any] = {"pretrained": model_dir, "dtype": dtype}
    if adapter is not None:
        from fedbench.harness.models import lora_settings_of

        rank = lora_settings_of(adapter).r
        fits = [r for r in VLLM_LORA_RANKS if r >= rank]
        if not fits:
            raise FedbenchError(
                f"vLLM serves LoRA ranks up to {VLLM_LORA_RANKS[-1]}; this adapter has r = {rank}", "use --backend hf"
            )
        args |= {"lora_local_path": str(adapter), "max_lora_rank": fits[0]}
    return "vllm", args


def lm_model(backend: str, model_dir: str, adapter: Path | None, dtype: str, batch_size: int | str, device: str) -> Any:
    """lm-eval's model for one subject, built exactly as ``simple_evaluate(model=..., model_args=...)`` builds it.

    Kept for the subject's next task: subjects are evaluated one after another, so holding one
    model at a time saves a load per task without holding every adapter in memory.
    """
    name, model_args = model_request(backend, model_dir, adapter, dtype)
    key = (name, model_dir, None if adapter is None else str(adapter), dtype, batch_size, device)
    if key not in _MODEL:
        _MODEL.clear()
        gc.collect()
        import torch
        from lm_eval.api.registry import get_model

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
        extra = {"batch_size": batch_size} | ({"device": device} if name == "hf" else {})
        _MODEL[key] = get_model(name).create_from_arg_obj(model_args, extra)
    return _MODEL[key]


def summarize(results: Mapping[str, Any], run: TaskRun) -> ExternalScore:
    """The task's primary metric (lm-eval's first, or ``run.metric``) on /100, its interval from lm-eval's standard error.

    Only a share of documents in [0, 1] that is better when higher is stored: the leaderboard ranks
    every column that way and shows lm-eval columns on /100.
    """
    table = results.get("results") or {}
    if run.task not in table:
        raise FedbenchError(
            f"lm-eval reported no combined score for '{run.task}' (a tag lists tasks without one)",
            f"name its tasks one by one: --benchmarks {','.join(f'lm_eval:{t}' for t in sorted(table)) or 'lm_eval:<task>'}",
        )
    entry = table[run.task]
    metrics = [k for k, v in entry.items() if "," in k and not k.split(",")[0].endswith("_stderr") and _number(v)]
    if not metrics:
        raise FedbenchError(
            f"lm-eval reported no metric for '{run.task}' (a group without aggregate_metric_list has no combined score)",
            f"name its tasks one by one: --benchmarks {','.join(f'lm_eval:{t}' for t in sorted(set(table) - {run.task}))}",
        )
    key = _pick_metric(metrics, run)
    metric, filter_key = key.split(",", 1)
    value = float(entry[key])
    higher = (results.get("higher_is_better") or {}).get(run.task, {}).get(metric)
    if metric in NOT_RATES or higher is False or not 0.0 <= value <= 1.0:
        raise FedbenchError(
            f"lm-eval's {metric} for '{run.task}' is not a share of documents that is better when higher "
            f"(value {value:g}, higher_is_better {higher}): fedbench stores lm-eval scores as rates on /100",
            f"choose another metric with the benchmark parameter metric, one of: {', '.join(metrics)}",
        )
    samples = results.get("samples") or {}
    verdicts = _verdicts(samples, metric, filter_key, value)
    counts = results.get("n-samples") or {}
    n = sum(int(c.get("effective", 0)) for c in counts.values() if isinstance(c, Mapping)) or len(verdicts)
    score = 100.0 * value
    stderr = entry.get(f"{metric}_stderr,{filter_key}")
    ci_low: float | None
    ci_high: float | None
    if _number(stderr) and math.isfinite(float(stderr)):
        half = Z95 * 100.0 * float(stderr)
        ci_low, ci_high = max(0.0, score - half), min(100.0, score + half)
        note = "lm-eval's standard error x 1.96 (normal approximation), clipped to [0, 100]"
    else:
        ci_low = ci_high = None
        note = f"lm-eval gave no standard error ({stderr!r}; it needs at least 2 documents)"
    version = (results.get("versions") or {}).get(run.task)
    shots = (results.get("n-shot") or {}).get(run.task, "?")
    setting = (
        f"{run.task} version {version}, {metric} ({filter_key}), {shots}-shot, "
        f"lm-eval {results.get('lm_eval_version', '?')}; {run.request}"
    )
    return ExternalScore(score, n, setting, ci_low, ci_high, note, verdicts)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real)


def _pick_metric(metrics: Sequence[str], run: TaskRun) -> str:
    """``run.metric`` as ``acc`` (its first filter) or ``exact_match,flexible-extract``; unset, lm-eval's first metric."""
    if run.metric is None:
        return metrics[0]
    for key in metrics:
        if key == run.metric or key.split(",", 1)[0] == run.metric:
            return key
    raise FedbenchError(
        f"lm-eval reported no metric '{run.metric}' for '{run.task}'.{did_you_mean(run.metric, metrics)}",
        f"set the benchmark parameter metric to one of: {', '.join(metrics)}",
    )


def _verdicts(samples: Mapping[str, Sequence[Mapping[str, Any]]], metric: str, filter_key: str, value: float) -> list[Judgment]:
    """One judgment per document from lm-eval's per-sample records, when their mean is lm-eval's score.

    A metric computed over the corpus (F1 over all documents, an unweighted mean of a group's tasks)
    is not a mean of per-document values: then none are stored, and the row keeps lm-eval's interval
    alone. Accuracy-like 0/1 values are stored as they are (like AdvBench's), other values on /100.
    """
    found: list[tuple[str, float, str]] = []
    for task, docs in samples.items():
        for doc in docs:
            if doc.get("filter", filter_key) != filter_key or metric not in doc:
                continue
            if not _number(doc[metric]):
                return []
            reply = json.dumps(
                {"target": doc.get("target"), "response": doc.get("filtered_resps")}, ensure_ascii=False, default=_jsonable
            )
            found.append((f"{task}/{doc.get('doc_id')}", float(doc[metric]), reply[:2000]))
    values = [v for _, v, _ in found]
    if not values or abs(sum(values) / len(values) - value) > 1e-6:
        return []
    factor = 1.0 if all(v in (0.0, 1.0) for v in values) else 100.0
    return [Judgment(qid, factor * v, reply) for qid, v, reply in found]


def write_samples(samples: Mapping[str, Sequence[Mapping[str, Any]]], path: Path) -> Path:
    """lm-eval's per-document records (arguments, responses, filtered answer, metrics), one JSON line each with its task.

    Written to a temporary file and renamed, so a file that exists is complete.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with partial.open("w", encoding="utf-8") as out:
        for task, docs in samples.items():
            for doc in docs:
                out.write(json.dumps({"task": task} | dict(doc), ensure_ascii=False, default=_jsonable) + "\n")
    os.replace(partial, path)
    return path


def _jsonable(value: Any) -> Any:
    """numpy scalars as numbers, sets and tuples as lists, anything else as its text."""
    if hasattr(value, "item") and callable(value.item):
        try:
            return value.item()
        except (TypeError, ValueError):
            pass
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    return str(value)
