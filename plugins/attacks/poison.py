"""Update poisoning: a malicious client trains honestly, then sends a scaled, sign-flipped or random update."""

from __future__ import annotations

import torch

from fedbench.api import Attack, FedbenchError, Params, hookimpl


class Scale(Attack):
    """Scaled update: x + factor (x_i - x), a boosted update (Bhagoji et al. 2019's explicit boosting).

    With a negative factor the update points away from what the client learnt; ``sign-flip`` is that with factor -1.
    """

    name = "scale"

    def __init__(self, fraction: float = 0.25, factor: float = 10.0) -> None:
        super().__init__(fraction)
        self.factor = factor

    def poison_update(self, global_params: Params, params: Params, generator: torch.Generator) -> Params:
        return {k: x + self.factor * (params[k].to(x) - x) for k, x in global_params.items()}


class SignFlip(Scale):
    """Sign-flipped update: x - factor (x_i - x), the client's own step reversed (factor 1: the same length)."""

    name = "sign-flip"

    def __init__(self, fraction: float = 0.25, factor: float = 1.0) -> None:
        if factor <= 0:
            raise FedbenchError(f"sign-flip: got factor={factor}", "set attack_params.factor > 0 (1: the update reversed)")
        super().__init__(fraction, -factor)


class Noise(Attack):
    """Gaussian update: x + N(0, std^2) per coordinate in place of the trained update (Blanchard et al. 2017's
    Gaussian Byzantine worker), drawn from the run's seed, round and client."""

    name = "noise"

    def __init__(self, fraction: float = 0.25, std: float = 0.01) -> None:
        super().__init__(fraction)
        if not std > 0:
            raise FedbenchError(f"noise: got std={std}", "set attack_params.std > 0, e.g. 0.01")
        self.std = std

    def poison_update(self, global_params: Params, params: Params, generator: torch.Generator) -> Params:
        return {
            k: x + (self.std * torch.randn(x.shape, generator=generator, dtype=torch.float32)).to(x)
            for k, x in global_params.items()
        }


@hookimpl
def fedbench_attacks() -> list[type[Attack]]:
    return [Scale, SignFlip, Noise]
