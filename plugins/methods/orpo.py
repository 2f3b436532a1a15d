"""ORPO: reference-free preference optimisation on pairs, via TRL's ORPOTrainer (SFT on chosen plus an odds-ratio term)."""

from __future__ import annotations

from typing import Any

from fedbench.api import Method, hookimpl

from ._paired import PairedMethod


class ORPO(PairedMethod):
    """ORPO (Hong et al. 2024): SFT on the chosen answer plus beta x the log odds ratio of chosen over rejected; no reference."""

    name = "orpo"
    display = "ORPO"
    needs_reference = False
    reward = "log_odds"

    def __init__(self, beta: float = 0.1) -> None:
        """``beta`` weighs the odds-ratio term against the SFT term (the paper's lambda)."""
        self.beta = beta

    def trl(self) -> tuple[type, type, dict[str, Any]]:
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        return ORPOConfig, ORPOTrainer, {"beta": self.beta}


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [ORPO]
