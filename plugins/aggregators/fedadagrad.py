"""FedAdagrad (Reddi et al. 2021): the adaptive server step with Adagrad's accumulated second moment."""

from __future__ import annotations

import torch

from fedbench.api import Aggregator, hookimpl
from fedbench.plugins.aggregators._adaptive import AdaptiveServer


class FedAdagrad(AdaptiveServer):
    """Adagrad on the server: v <- v + Delta^2, x <- x + eta m/(sqrt(v)+tau) (Reddi et al. 2021).

    Reddi, Charles, Zaheer et al., "Adaptive Federated Optimization", ICLR 2021, Algorithm 2:
        Delta = sum_i (n_i/n)(x_i - x)
        m <- beta1 m + (1 - beta1) Delta        (m_0 = 0)
        v <- v + Delta^2                        (v_0 = tau^2)
        x <- x + eta m / (sqrt(v) + tau)        (no bias correction)
    Defaults: eta (server_lr) 1e-2, a typical server rate for the adaptive methods in the paper;
    beta1 0.9; tau 1e-3. Adagrad has no beta2, so it takes none.
    """

    name = "fedadagrad"

    def __init__(self, server_lr: float = 1e-2, beta1: float = 0.9, tau: float = 1e-3) -> None:
        super().__init__(server_lr=server_lr, beta1=beta1, beta2=0.0, tau=tau)

    def update_v(self, v: list[torch.Tensor], delta_sq: list[torch.Tensor]) -> None:
        torch._foreach_add_(v, delta_sq)


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [FedAdagrad]
