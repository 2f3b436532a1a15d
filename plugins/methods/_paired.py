"""What every paired objective shares: pairs as TRL's prompt/chosen/rejected rows, and a TRL trainer built from
the objective's own config settings (DPO, SimPO, ORPO and their kin)."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from fedbench.api import Example, LocalTrainingArgs, Method, PreferencePair, completion_for, prompt_for, trainer_settings

if TYPE_CHECKING:
    import datasets
    from peft import PeftModel
    from transformers import PreTrainedModel, PreTrainedTokenizerBase, Trainer, TrainerCallback


class PairedMethod(Method):
    """Base of the objectives that train on (prompt, chosen, rejected) pairs, both answers on one client."""

    data_form = "paired"

    @abstractmethod
    def trl(self) -> tuple[type, type, dict[str, Any]]:
        """The TRL config class, trainer class and the objective's config settings (loss, beta, ...)."""

    def records(self, examples: Sequence[Example], template: str) -> list[dict[str, Any]]:
        rows = []
        for ex in examples:
            assert isinstance(ex, PreferencePair), f"{self.name} trains on pairs; the layout check keeps unpaired data away"
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
        config_class, trainer_class, settings = self.trl()
        config = config_class(**trainer_settings(args), **settings)
        return trainer_class(
            model=model, args=config, train_dataset=dataset, processing_class=tokenizer, callbacks=list(callbacks)
        )
