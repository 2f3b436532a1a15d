"""Unpaired APO-zero: KTO's trainer with TRL's ``apo_zero_unpaired`` loss.

TRL 1.16 has no BCO trainer any more (only DPO's paired ``bco_pair`` loss), so the unpaired objective without a
KL estimate that TRL maintains is this one.
"""

from __future__ import annotations

from fedbench.api import Method, hookimpl

from .kto import KTO


class APOZeroUnpaired(KTO):
    """Unpaired APO-zero (D'Oosterlinck et al. 2024): desirable answers up, undesirable down, each vs the reference; no KL."""

    name = "apo-zero-unpaired"
    display = "APO0-U"
    study = False
    ref_columns = ("ref_logps",)
    min_batch = 1
    batch_reason = ""

    def __init__(self, beta: float = 0.1, desirable_weight: float | str = 1.0, undesirable_weight: float = 1.0) -> None:
        super().__init__(beta, desirable_weight, undesirable_weight, loss_type="apo_zero_unpaired")


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [APOZeroUnpaired]
