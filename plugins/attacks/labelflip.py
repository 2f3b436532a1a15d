"""Label flipping: a malicious client trains on its preferences reversed."""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence

from fedbench.api import Attack, Example, FedbenchError, LabeledExample, hookimpl


class LabelFlip(Attack):
    """Label flipping: swap chosen and rejected (DPO), or invert desirable / undesirable (KTO), on a share of examples.

    The data-poisoning attack of Tolpegin et al. ("Data Poisoning Attacks Against Federated Learning Systems", 2020)
    carried to preferences: a malicious client trains honestly on labels it reversed. ``examples`` is the share of
    its examples flipped (1: all), which ones drawn by the run's seed; its held-out pairs stay as they were, so its
    held-out score measures the true preferences.
    """

    name = "label-flip"

    def __init__(self, fraction: float = 0.25, examples: float = 1.0) -> None:
        super().__init__(fraction)
        if not 0 < examples <= 1:
            raise FedbenchError(
                f"label-flip: examples {examples} is not a share of a client's examples in (0, 1]",
                "set attack_params.examples to e.g. 1 (every example) or 0.5 (half of them)",
            )
        self.examples = examples

    def poison_examples(self, examples: Sequence[Example], rng: random.Random) -> list[Example]:
        flipped = set(rng.sample(range(len(examples)), round(self.examples * len(examples))))
        return [flip(ex) if i in flipped else ex for i, ex in enumerate(examples)]


def flip(example: Example) -> Example:
    """The example with its preference reversed: the label inverted, or chosen and rejected swapped."""
    if isinstance(example, LabeledExample):
        return dataclasses.replace(example, label=not example.label)
    return dataclasses.replace(example, chosen=example.rejected, rejected=example.chosen)


@hookimpl
def fedbench_attacks() -> list[type[Attack]]:
    return [LabelFlip]
