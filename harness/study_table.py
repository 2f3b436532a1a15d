"""The study's table, in one place: its variants, its order of aggregators and benchmarks, and a subject's label.

The study compares three variants (DPO, and KTO on the original or the redistributed layout) under each of
its aggregators, on its benchmarks, with the base model as a row of its own. Evaluation orders a together-
graded prompt by these variants, the results wing lays out its table by them, and a published table is read
in their spelling; all of them read this module, which imports nothing, so every floor can.
"""

from __future__ import annotations

BASE = "base"
"""The untrained base model's method (a subject's, a score row's); the table shows it as :data:`BASE_ROW`."""
BASE_ROW = "Base"
AGGREGATOR_ORDER = ("fedavg", "fedprox", "scaffold", "fedavgm", "fedyogi", "fedadagrad", "fedadam")
VARIANTS = {("dpo", "original"): "DPO", ("kto", "original"): "KTOO", ("kto", "redistributed"): "KTOR"}
"""(method, layout) -> the study's column name, in the study's order."""
BENCHMARK_ORDER = ("mt_bench_1", "vicuna", "advbench", "preference.reward", "preference.likelihood")
BASELINE_ROWS = {"centralized": "Centralized", "local": "Local only"}
"""Rows of the baseline aggregators (harness/baselines.py), shown below the federated ones and above Base."""


def variant(method: str, layout: str) -> str:
    """The study's column name for a method x layout; another objective by the name its plugins give it (``IPO``,
    ``SimPO``, ``APO0-U/R``: ``interfaces.variant_label``), or ``METHOD-layout`` where no plugin of that name is
    registered (an imported or older store's row)."""
    if (method, layout) in VARIANTS:
        return VARIANTS[(method, layout)]
    from fedbench.harness.interfaces import variant_label  # here only: this module imports nothing at load time
    from fedbench.harness.registry import default_registry

    registry = default_registry()
    found, where = registry.find("method", method), registry.find("layout", layout)
    if found is None or where is None:
        return f"{method.upper()}-{layout}"
    return variant_label(found.plugin, where.plugin)


def variant_rank(method: str, layout: str) -> int:
    """A method x layout's place among the study's variants (others after them)."""
    order = list(VARIANTS)
    return order.index((method, layout)) if (method, layout) in VARIANTS else len(order)


def benchmark_rank(benchmark: str) -> tuple[int, str]:
    """Sort key: the study's benchmarks in its order, then others by name."""
    return (BENCHMARK_ORDER.index(benchmark) if benchmark in BENCHMARK_ORDER else len(BENCHMARK_ORDER), benchmark)


def subject_label(method: str, layout: str, aggregator: str, seed: int | None) -> str:
    """``base`` or the cell, e.g. ``kto-redistributed-fedavg`` (with ``@seed`` when it is not 0): the one name a subject
    goes by in the progress lines, a together-graded prompt's answer order, the report and the resources view."""
    if method == BASE:
        return BASE
    return "-".join(part for part in (method, layout, aggregator) if part) + (f"@{seed}" if seed else "")
