"""DPO: Direct Preference Optimization on paired (chosen, rejected) responses, via TRL's DPOTrainer.

Every loss TRL's DPOTrainer implements is reachable through ``method_params.loss_type`` (one name or a list,
combined with ``loss_weights``); the objectives with a name of their own (IPO, robust DPO, APO-zero) are this
class with the loss fixed, so they train through exactly this code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fedbench.api import FedbenchError, Method, hookimpl

from ._paired import PairedMethod

LOSSES = (
    "sigmoid",
    "hinge",
    "ipo",
    "exo_pair",
    "nca_pair",
    "robust",
    "bco_pair",
    "sppo_hard",
    "aot",
    "aot_unpaired",
    "apo_zero",
    "apo_down",
    "discopop",
    "sft",
    "sigmoid_norm",
)
"""TRL 1.16's DPOTrainer loss types (``DPOTrainer._compute_loss``); TRL itself checks a name only at the first step,
so fedbench checks it when the run starts. tests/test_objectives.py compares the list with TRL's own."""

BATCH_LOSSES = ("aot", "aot_unpaired")
"""Losses that sort the log-ratios of a batch's pairs against each other: at a batch of 1 AOT is plain DPO."""


class DPO(PairedMethod):
    """Direct Preference Optimization (Rafailov et al. 2023) on prompt/chosen/rejected pairs."""

    name = "dpo"
    display = "DPO"
    study = True
    ref_columns: tuple[str, ...] = ("ref_chosen_logps", "ref_rejected_logps")
    """Columns TRL's DPOTrainer reads precomputed reference log-probs from (see harness/refcache.py)."""

    def __init__(
        self,
        beta: float = 0.1,
        loss_type: str | Sequence[str] = "sigmoid",
        loss_weights: Sequence[float] | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        losses = (loss_type,) if isinstance(loss_type, str) else tuple(loss_type)
        unknown = [t for t in losses if t not in LOSSES]
        if unknown or not losses:
            raise FedbenchError(
                f"{self.name}: loss_type {', '.join(map(repr, unknown)) or '(empty)'} is not a loss of TRL's DPOTrainer",
                f"use one of: {', '.join(LOSSES)} (or a list of them with loss_weights)",
            )
        if loss_weights is not None and len(loss_weights) != len(losses):
            raise FedbenchError(
                f"{self.name}: {len(loss_weights)} loss_weights for {len(losses)} loss types ({', '.join(losses)})",
                "give one weight per loss type, in the same order, or leave loss_weights out for weights of 1",
            )
        self.beta = beta
        self.loss_type = losses
        self.loss_weights = None if loss_weights is None else [float(w) for w in loss_weights]
        self.label_smoothing = label_smoothing
        batch = [t for t in losses if t in BATCH_LOSSES]
        if batch:
            self.min_batch = 2
            self.batch_reason = f"loss {batch[0]} compares the sorted log-ratios of a batch's pairs (at 1 it is plain DPO)"

    def trl(self) -> tuple[type, type, dict[str, Any]]:
        from trl import DPOConfig, DPOTrainer

        settings = {
            "beta": self.beta,
            "loss_type": list(self.loss_type),
            "loss_weights": self.loss_weights,
            "label_smoothing": self.label_smoothing,
        }
        return DPOConfig, DPOTrainer, settings


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [DPO]
