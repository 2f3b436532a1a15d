"""APO-zero: DPO's trainer with TRL's ``apo_zero`` loss."""

from __future__ import annotations

from fedbench.api import Method, hookimpl

from .dpo import DPO


class APOZero(DPO):
    """Anchored Preference Optimization, APO-zero (D'Oosterlinck et al. 2024): chosen up, rejected down, each vs the reference."""

    name = "apo-zero"
    display = "APO0"
    study = False

    def __init__(self, beta: float = 0.1) -> None:
        super().__init__(beta, loss_type="apo_zero")


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [APOZero]
