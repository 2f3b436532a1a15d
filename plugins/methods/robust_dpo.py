"""Robust DPO: DPO's trainer with TRL's ``robust`` loss."""

from __future__ import annotations

from fedbench.api import FedbenchError, Method, hookimpl

from .dpo import DPO


class RobustDPO(DPO):
    """Robust DPO (Chowdhury et al. 2024): DPO made unbiased for labels flipped with probability label_smoothing."""

    name = "robust-dpo"
    display = "rDPO"
    study = False

    def __init__(self, beta: float = 0.1, label_smoothing: float = 0.1) -> None:
        """``label_smoothing`` is the assumed flip rate, in [0, 0.5): 0.1 is the paper's typical value, 0 plain DPO."""
        if not 0 <= label_smoothing < 0.5:
            raise FedbenchError(
                f"robust-dpo: label_smoothing {label_smoothing} is not a flip rate in [0, 0.5)",
                "set label_smoothing to e.g. 0.1 (0 is plain DPO)",
            )
        super().__init__(beta, loss_type="robust", label_smoothing=label_smoothing)


@hookimpl
def fedbench_methods() -> list[type[Method]]:
    return [RobustDPO]
