"""KTO: Kahneman-Tversky Optimization on single responses labelled desirable or not, via TRL's KTOTrainer.

``method_params.loss_type`` picks any loss TRL's KTOTrainer implements; the unpaired APO-zero, which has a
name of its own, is this class with the loss fixed (plugins/methods/apo_zero_unpaired.py).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fedbench.api import (
    Example,
    FedbenchError,
    LabeledExample,
    LocalTrainingArgs,
    Method,
    PreferencePair,
    completion_for,
    hookimpl,
    prompt_for,
    trainer_settings,
    unpair,
)

if TYPE_CHECKING:
    import datasets
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback


LOSSES = ("kto", "apo_zero_unpaired")
"""TRL 1.16's KTOTrainer loss types (``KTOConfig.loss_type``'s choices; tests/test_objectives.py compares them)."""

KL_LOSSES = ("kto",)
"""Losses that estimate the KL reference point from a batch's mismatched (prompt, other row's answer) pairs."""

RECOMMENDED = (1.0, 4 / 3)
"""KTO paper (Ethayarajh et al. 2024, eq. 8): keep desirable_weight * n_desirable / (undesirable_weight * n_undesirable) here."""


class KTO(Method):
    """Kahneman-Tversky Optimization (Ethayarajh et al. 2024) on (prompt, response, good/bad) examples.

    ``desirable_weight = "balanced"`` is the study code's rule: for each client and round, the
    desirable weight is n_undesirable / n_desirable of the data the client trains on (undesirable
    weight 1), which keeps the paper's ratio at 1 however skewed a client's labels are (the
    redistributed layout skews them). A client with examples of one kind only has no ratio (the
    study's code divides by zero or zeroes the client's loss): it trains with both weights 1, and
    the history records ``balanced_fallback = 1`` for it.
    """

    name = "kto"
    display = "KTO"
    study = True
    data_form = "unpaired"
    ref_columns: tuple[str, ...] = ("ref_logps", "ref_KL_logps")
    """Columns TRL's KTOTrainer reads precomputed reference log-probs from (see harness/refcache.py); a loss without
    the KL term reads only ``ref_logps``."""
    min_batch = 2
    batch_reason = "its KL reference point is estimated from the other rows of the batch (TRL refuses a batch of 1)"

    def __init__(
        self,
        beta: float = 0.1,
        desirable_weight: float | str = 1.0,
        undesirable_weight: float = 1.0,
        loss_type: str = "kto",
    ) -> None:
        if loss_type not in LOSSES:
            raise FedbenchError(
                f"{self.name}: loss_type '{loss_type}' is not a loss of TRL's KTOTrainer",
                f"use one of: {', '.join(LOSSES)}",
            )
        if loss_type not in KL_LOSSES:  # no KL term: no KL reference column, and any batch trains it
            self.ref_columns = ("ref_logps",)
            self.min_batch = 1
        if isinstance(desirable_weight, str) and desirable_weight != "balanced":
            raise FedbenchError(
                f"kto: desirable_weight '{desirable_weight}' is not a number or 'balanced'",
                "set desirable_weight to a positive number, or to 'balanced' for the study's per-client rule",
            )
        if desirable_weight == "balanced" and undesirable_weight != 1.0:
            raise FedbenchError(
                "kto: desirable_weight = 'balanced' sets the desirable weight against an undesirable weight of 1",
                "leave undesirable_weight at 1 with 'balanced'",
            )
        self.beta = beta
        self.loss_type = loss_type
        self.desirable_weight = desirable_weight
        self.undesirable_weight = undesirable_weight

    def examples(self, pairs: Sequence[PreferencePair]) -> list[Example]:
        examples: list[Example] = list(unpair(pairs))
        good = sum(1 for ex in examples if isinstance(ex, LabeledExample) and ex.label)
        bad = len(examples) - good
        if not isinstance(self.desirable_weight, str) and good and bad:
            ratio = self.desirable_weight * good / (self.undesirable_weight * bad)
            if not RECOMMENDED[0] <= ratio <= RECOMMENDED[1]:
                warnings.warn(
                    f"kto: desirable_weight x desirable / (undesirable_weight x undesirable) is {ratio:.2f} on this data, "
                    f"outside the KTO paper's recommended [1, 1.33]; desirable_weight = 'balanced' keeps it at 1 per client",
                    stacklevel=2,
                )
        return examples

    def local_settings(self, dataset: datasets.Dataset) -> dict[str, float]:
        if self.desirable_weight != "balanced":
            return {}
        good = sum(1 for label in dataset["label"] if label)
        bad = len(dataset) - good
        if good == 0 or bad == 0:
            return {"desirable_weight": 1.0, "balanced_fallback": 1.0}
        return {"desirable_weight": bad / good}

    def records(self, examples: Sequence[Example], template: str) -> list[dict[str, Any]]:
        rows = []
        for ex in examples:
            assert isinstance(ex, LabeledExample), "KTO trains on labelled single responses"
            rows.append(
                {
                    "prompt": prompt_for(template, ex.prompt),
                    "completion": completion_for(template, ex.completion),
                    "label": ex.label,
                }
            )
        return rows

    def build_trainer(
        self,
        model: PreTrainedModel | PeftModel,
        tokenizer: PreTrainedTokenizerBase,
        dataset: datasets.Dataset,
        args: LocalTrainingArgs,
        callbacks: Sequence[TrainerCallback],
    ) -> Trainer:
        from trl import KTOConfig, KTOTrainer

        desirable = self.local_settings(dataset).get("desirable_weight", self.desirable_weight)
        config = KTOConfig(
            **trainer_settings(args),
            beta=self.beta,
            loss_type=self.loss_type,
            desirable_weight=float(desirable),
            undesirable_weight=self.undesirable_weight,
        )
        return KTOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=list(callbacks))


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [KTO]
