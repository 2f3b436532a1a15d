"""KTO: Kahneman-Tversky Optimization on single responses labelled desirable or not, via TRL's KTOTrainer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fedbench.api import (
    Example,
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


class KTO(Method):
    """Kahneman-Tversky Optimization (Ethayarajh et al. 2024) on (prompt, response, good/bad) examples."""

    name = "kto"
    data_form = "unpaired"
    ref_columns = ("ref_logps", "ref_KL_logps")
    """Columns TRL's KTOTrainer reads precomputed reference log-probs from (see harness/refcache.py)."""

    def __init__(self, beta: float = 0.1, desirable_weight: float = 1.0, undesirable_weight: float = 1.0) -> None:
        self.beta = beta
        self.desirable_weight = desirable_weight
        self.undesirable_weight = undesirable_weight

    def examples(self, pairs: Sequence[PreferencePair]) -> list[Example]:
        return list(unpair(pairs))

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

        config = KTOConfig(
            **trainer_settings(args),
            beta=self.beta,
            desirable_weight=self.desirable_weight,
            undesirable_weight=self.undesirable_weight,
        )
        return KTOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=list(callbacks))


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [KTO]
