"""FedAdam (Reddi et al. 2021): the adaptive server step with Adam's exponential second moment."""

from __future__ import annotations

import torch

from fedbench.api import Aggregator, hookimpl
from fedbench.plugins.aggregators._adaptive import AdaptiveServer


class FedAdam(AdaptiveServer):
    """Adam on the server: v <- beta2 v + (1-beta2) Delta^2, x <- x + eta m/(sqrt(v)+tau) (Reddi et al. 2021).

    Reddi, Charles, Zaheer et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2:
        Delta = sum_i (n_i/n)(x_i - x)
        m <- beta1 m + (1 - beta1) Delta        (m_0 = 0)
        v <- beta2 v + (1 - beta2) Delta^2      (v_0 = tau^2)
        x <- x + eta m / (sqrt(v) + tau)        (no bias correction)
    Defaults: eta (server_lr) 1e-2, a typical server rate for the adaptive methods in the paper;
    beta1 0.9; beta2 0.99; tau 1e-3.
    """

    name = "fedadam"

    def update_v(self, v: list[torch.Tensor], delta_sq: list[torch.Tensor]) -> None:
        torch._foreach_mul_(v, self.beta2)
        torch._foreach_add_(v, delta_sq, alpha=1 - self.beta2)


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [FedAdam]
