"""FedYogi (Reddi et al. 2021): the adaptive server step with Yogi's sign-controlled second moment."""

from __future__ import annotations

import torch

from fedbench.api import Aggregator, hookimpl
from fedbench.plugins.aggregators._adaptive import AdaptiveServer


class FedYogi(AdaptiveServer):
    """Yogi on the server: v <- v - (1-beta2) Delta^2 sign(v - Delta^2), x <- x + eta m/(sqrt(v)+tau) (Reddi et al. 2021).

    Reddi, Charles, Zaheer et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2:
        Delta = sum_i (n_i/n)(x_i - x)
        m <- beta1 m + (1 - beta1) Delta                       (m_0 = 0)
        v <- v - (1 - beta2) Delta^2 sign(v - Delta^2)         (v_0 = tau^2)
        x <- x + eta m / (sqrt(v) + tau)                       (no bias correction)
    Unlike Adam, v moves by an additive amount whose sign says whether Delta^2 is above or
    below it, so v grows or shrinks more slowly. Defaults: eta (server_lr) 1e-2, a typical
    server rate for the adaptive methods in the paper; beta1 0.9; beta2 0.99; tau 1e-3.
    """

    name = "fedyogi"

    def update_v(self, v: list[torch.Tensor], delta_sq: list[torch.Tensor]) -> None:
        change = torch._foreach_sub(v, delta_sq)
        torch._foreach_sign_(change)
        torch._foreach_mul_(change, delta_sq)
        torch._foreach_add_(v, change, alpha=-(1 - self.beta2))


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [FedYogi]
