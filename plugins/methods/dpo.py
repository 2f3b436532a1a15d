"""DPO: Direct Preference Optimization on paired (chosen, rejected) responses, via TRL's DPOTrainer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fedbench.api import (
    Example,
    LocalTrainingArgs,
    Method,
    PreferencePair,
    completion_for,
    hookimpl,
    prompt_for,
    trainer_settings,
)

if TYPE_CHECKING:
    import datasets
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback


class DPO(Method):
    """Direct Preference Optimization (Rafailov et al. 2023) on prompt/chosen/rejected pairs."""

    name = "dpo"
    data_form = "paired"
    ref_columns = ("ref_chosen_logps", "ref_rejected_logps")
    """Columns TRL's DPOTrainer reads precomputed reference log-probs from (see harness/refcache.py)."""

    def __init__(self, beta: float = 0.1, loss_type: str = "sigmoid") -> None:
        self.beta = beta
        self.loss_type = loss_type

    def records(self, examples: Sequence[Example], template: str) -> list[dict[str, Any]]:
        rows = []
        for ex in examples:
            assert isinstance(ex, PreferencePair), "DPO trains on pairs; the layout check keeps unpaired data away"
            rows.append(
                {
                    "prompt": prompt_for(template, ex.prompt),
                    "chosen": completion_for(template, ex.chosen),
                    "rejected": completion_for(template, ex.rejected),
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
        from trl import DPOConfig, DPOTrainer

        config = DPOConfig(**trainer_settings(args), beta=self.beta, loss_type=[self.loss_type])
        return DPOTrainer(model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=list(callbacks))


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [DPO]
