"""What an evaluation scores: the base model, a finished cell's adapter, or answers imported from another study.

A subject carries what shapes its answers (model, template, precision, adapter), where its held-out pairs are, its
place in the study's matrix (method, layout, aggregator, seed, tag) and the training budget it records, so the
leaderboard can say when two compared cells were trained unequally.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedbench.harness.checkpoint import RunDir
from fedbench.harness.errors import FedbenchError
from fedbench.harness.holdout import HOLDOUT_FILE
from fedbench.harness.spec import RunSpec
from fedbench.harness.store import Store
from fedbench.harness.study_table import BASE, subject_label


@dataclass(frozen=True)
class Subject:
    """A model to evaluate: the base model, or a cell's trained adapter."""

    key: str
    model: str
    template: str
    dtype: str
    """The precision the cell trained in: answers are generated in it (likelihood scoring uses ``EvalSpec.score_dtype``)."""
    adapter: Path | None = None
    method: str = BASE
    layout: str = ""
    aggregator: str = ""
    traffic: tuple[int, int] | None = None
    seed: int | None = None
    settings_key: str | None = None
    heldout: Path | None = None
    """The held-out preference pairs this subject is scored on (a cell's own; the base model's cells')."""
    tag: str = ""
    """``RunSpec.tag``: the cell's privacy and codec settings where they are not the defaults."""
    local_only: bool = False
    """A local-only baseline cell: each client's held-out pairs are scored with that client's own adapter
    (``baselines.client_adapter_dir``; a client that never trained is left out), ``adapter`` answers the rest."""
    budget: tuple[tuple[str, Any], ...] = ()
    """What the subject's training spent (:data:`BUDGET_KEYS`), recorded in the store so the leaderboard can say
    when the cells it compares were trained unequally."""
    origin: str = ""
    """Where the subject's answers come from when fedbench did not generate them: ``imported from FILE``
    (``fedbench import``). Such a subject has no model here: it is judged again on its stored answers only."""

    @property
    def imported(self) -> bool:
        return bool(self.origin)

    @property
    def label(self) -> str:
        """``base`` or the cell, e.g. ``kto-redistributed-fedavg`` (with ``@seed`` when it is not 0)."""
        return subject_label(self.method, self.layout, self.aggregator, self.seed)


BUDGET_KEYS = (
    "rounds",
    "clients",
    "clients_per_round",
    "local_steps",
    "batch_size",
    "grad_accum",
    "max_length",
    "lora_r",
    "lora_alpha",
)
"""The training settings a comparison between cells should hold equal (``clients``: how many the data has)."""


def training_budget(spec: RunSpec) -> tuple[tuple[str, Any], ...]:
    """The :data:`BUDGET_KEYS` a spec sets (``clients`` comes from the data, not the spec)."""
    return tuple((key, getattr(spec, key)) for key in BUDGET_KEYS if hasattr(spec, key))


def base_subject(model: str, template: str, dtype: str, heldout: Path | None = None) -> Subject:
    """The untrained model as a subject, keyed by what shapes its answers, shared by all its cells."""
    digest = hashlib.sha256(f"{model}|{template}|{dtype}".encode()).hexdigest()[:12]
    return Subject(f"{BASE}-{digest}", model, template, dtype, heldout=heldout)


def cell_subject(run_dir: Path) -> Subject:
    """A finished cell's run directory as a subject; refuses an unfinished one."""
    result = RunDir.at(run_dir).result()
    if result is None:
        raise FedbenchError(
            f"{run_dir} has not finished training", "rerun `fedbench run` with the same settings to finish it first"
        )
    spec = result.spec
    heldout = run_dir / HOLDOUT_FILE
    return Subject(
        spec.hash,
        spec.model,
        spec.template,
        spec.dtype,
        RunDir(run_dir.parent, spec).adapter_dir,
        spec.method,
        spec.layout,
        spec.aggregator,
        result.traffic,
        spec.seed,
        spec.settings_key,
        heldout if heldout.is_file() else None,
        spec.tag,
        result.local_only is not None,
        training_budget(spec),
    )


def imported_subjects(store: Store) -> list[Subject]:
    """The subjects ``fedbench import`` put in a store, base model first: judged again on their stored answers."""
    rows = {r.subject: r for r in store.scores()}
    budgets = store.budgets()
    found = [
        Subject(
            key,
            row.model,
            "",
            "",
            None,
            row.method,
            row.layout,
            row.aggregator,
            settings_key=key,
            budget=tuple(budgets.get(key, {}).items()),
            origin=origin,
        )  # fmt: skip
        for key, origin in sorted(store.origins().items())
        if origin.startswith("imported") and (row := rows.get(key)) is not None
    ]
    return sorted(found, key=lambda s: s.method != BASE)
