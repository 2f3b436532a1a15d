"""IPO: DPO's trainer with TRL's ``ipo`` loss."""

from __future__ import annotations

from fedbench.api import Method, hookimpl

from .dpo import DPO


class IPO(DPO):
    """Identity Preference Optimisation (Azar et al. 2023): a squared loss on the length-averaged log-ratio margin."""

    name = "ipo"
    display = "IPO"
    study = False

    def __init__(self, beta: float = 0.1) -> None:
        """``beta`` is the paper's tau, the regulariser: the loss pulls the margin towards 1 / (2 beta)."""
        super().__init__(beta, loss_type="ipo")


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [IPO]
