"""SimPO: reference-free preference optimisation on pairs, via TRL's CPOTrainer (``loss_type="simpo"``, no BC term)."""

from __future__ import annotations

from typing import Any

from fedbench.api import Method, hookimpl

from ._paired import PairedMethod


class SimPO(PairedMethod):
    """SimPO (Meng et al. 2024): the length-normalised log-probability is the reward, with a target margin; no reference."""

    name = "simpo"
    display = "SimPO"
    needs_reference = False
    reward = "mean_logp"

    def __init__(self, beta: float = 2.0, simpo_gamma: float = 0.5) -> None:
        """``beta`` scales the mean per-token log-probability (the paper uses 2 to 2.5); ``simpo_gamma`` is the paper's
        gamma, the target margin between the chosen and rejected rewards."""
        self.beta = beta
        self.simpo_gamma = simpo_gamma

    def trl(self) -> tuple[type, type, dict[str, Any]]:
        from trl.experimental.cpo import CPOConfig, CPOTrainer

        # cpo_alpha = 0 drops CPO's behaviour-cloning term: SimPO's loss alone (TRL's documented SimPO setting)
        return CPOConfig, CPOTrainer, {"loss_type": "simpo", "cpo_alpha": 0.0, "beta": self.beta, "simpo_gamma": self.simpo_gamma}


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [SimPO]
