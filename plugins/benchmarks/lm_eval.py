"""Closed-ended benchmarks through lm-evaluation-harness: ``--benchmarks lm_eval:mmlu,lm_eval:gsm8k``.

MMLU, GSM8K, ARC, HellaSwag and the like compare with published numbers only when they are scored
exactly as lm-evaluation-harness scores them. So this plugin copies none of lm-eval's prompts or
metrics: it names a task (any task or group lm-eval knows, or one of your own in ``include_path``)
with the options of its run, and fedbench hands the base model and every cell's adapter to lm-eval's
evaluator (``Benchmark.evaluator``, harness/lm_eval_bridge.py), which stores lm-eval's score as a /100 column.

Options go in the eval spec's ``benchmark_params`` under the full name, e.g.
``benchmark_params = { "lm_eval:mmlu" = { num_fewshot = 5 } }``. Needs ``pip install 'fedbench[lmeval]'``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fedbench.api import Benchmark, FedbenchError, Question, Request, hookimpl


class LmEval(Benchmark):
    """An lm-evaluation-harness task (lm_eval:<task>, e.g. lm_eval:mmlu), scored by lm-eval itself on /100."""

    name = "lm_eval"
    scale = 100.0
    default_judge = "lm_eval"
    judge_fixed = True
    request = Request.EXTERNAL
    evaluator = "lm_eval"

    def __init__(
        self,
        task: str = "",
        num_fewshot: int | None = None,
        limit: int | float | None = None,
        metric: str | None = None,
        include_path: str | None = None,
        batch_size: int | str | None = None,
        device: str | None = None,
        apply_chat_template: bool = False,
        gen_kwargs: dict[str, Any] | None = None,
    ) -> None:
        """lm-eval's own options, passed on as they are; None leaves lm-eval's default (the evaluation's: limit, batch size).

        ``task``: the lm-eval task or group (the part after ``lm_eval:``). ``num_fewshot``: examples in the prompt
        (None: the task's default). ``limit``: documents per task (a fraction below 1: that share; None: the
        evaluation's ``limit``, else all). ``metric``: which of the task's metrics is stored, ``acc_norm`` or
        ``exact_match,flexible-extract`` (None: lm-eval's first). ``include_path``: a folder of task YAMLs of your
        own, e.g. for a local copy of a data set. ``batch_size`` (``"auto"`` works), ``device`` (None: cuda, mps
        or cpu), ``apply_chat_template`` and ``gen_kwargs`` as in lm-eval's ``simple_evaluate``.
        """
        if not task:
            raise FedbenchError(
                "the lm_eval benchmark needs an lm-eval task",
                "name it in the benchmark list as lm_eval:<task>, e.g. --benchmarks lm_eval:mmlu,lm_eval:gsm8k",
            )
        if importlib.util.find_spec("lm_eval") is None:
            raise FedbenchError(
                f"lm_eval:{task} needs lm-evaluation-harness, which is not installed",
                "pip install 'fedbench[lmeval]' (lm-eval 0.4.x)",
            )
        if num_fewshot is not None and num_fewshot < 0:
            raise FedbenchError(f"lm_eval:{task}: num_fewshot must be 0 or more, not {num_fewshot}", "set num_fewshot >= 0")
        if limit is not None and limit <= 0:
            raise FedbenchError(
                f"lm_eval:{task}: limit must be positive, not {limit}", "set limit to a count, or a share below 1"
            )
        if include_path is not None and not Path(include_path).expanduser().is_dir():
            raise FedbenchError(
                f"lm_eval:{task}: include_path '{include_path}' is not a folder",
                "point include_path at the folder that holds your task YAML files",
            )
        self.task = task
        self.num_fewshot = num_fewshot
        self.limit = limit
        self.metric = metric
        self.include_path = None if include_path is None else str(Path(include_path).expanduser().resolve())
        self.batch_size = batch_size
        self.device = device
        self.apply_chat_template = apply_chat_template
        self.gen_kwargs = gen_kwargs

    def evaluator_settings(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "num_fewshot": self.num_fewshot,
            "limit": self.limit,
            "metric": self.metric,
            "include_path": self.include_path,
            "batch_size": self.batch_size,
            "device": self.device,
            "apply_chat_template": self.apply_chat_template,
            "gen_kwargs": self.gen_kwargs,
        }

    def questions(self, source: str | None = None, limit: int | None = None) -> list[Question]:
        """None to give: lm-eval builds its own prompts from the task's documents, and fedbench never sees them."""
        raise FedbenchError(
            f"lm_eval:{self.task} is scored by lm-evaluation-harness on the whole model and has no fedbench questions",
            "evaluate it with `fedbench eval` / `fedbench run --benchmarks lm_eval:<task>`; its per-document outputs are "
            "in each run directory's lm_eval/ folder",
        )


@hookimpl
def fedbench_benchmarks() -> list[type[Benchmark]]:
    return [LmEval]
