"""Shared server step of the adaptive federated optimizers (Reddi et al. 2021), which differ only in v.

Not a plugin (no hook implementation): FedAdagrad, FedYogi and FedAdam subclass
:class:`AdaptiveServer` and define :meth:`AdaptiveServer.update_v` alone.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence

import torch

from fedbench.api import (
    Aggregator,
    ClientUpdate,
    FedbenchError,
    Params,
    export_state,
    filled_like,
    import_state,
    mean_delta,
)


class AdaptiveServer(Aggregator):
    """Adaptive server optimizer on the pseudo-gradient Delta = sum_i (n_i/n)(x_i - x) (Reddi et al. 2021, Alg. 2).

    m <- beta1 m + (1 - beta1) Delta          (m starts at 0, not at Delta)
    v <- update_v(v, Delta^2)                  (v starts at tau^2; the subclass's rule)
    x <- x + eta m / (sqrt(v) + tau)           (no bias correction: the paper has none)

    Defaults follow the paper's typical settings: beta1 0.9, beta2 0.99, tau 1e-3, and server
    learning rate eta 1e-2 (a typical server rate for the adaptive methods in Reddi et al.).
    """

    def __init__(self, server_lr: float = 1e-2, beta1: float = 0.9, beta2: float = 0.99, tau: float = 1e-3) -> None:
        if server_lr <= 0 or tau <= 0 or not (0 <= beta1 < 1) or not (0 <= beta2 < 1):
            raise FedbenchError(
                f"{self.name}: got server_lr={server_lr}, beta1={beta1}, beta2={beta2}, tau={tau}",
                "use server_lr > 0, tau > 0 and 0 <= beta1, beta2 < 1",
            )
        self.server_lr = server_lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.tau = tau
        self.m: Params = {}
        self.v: Params = {}

    def setup(self, global_params: Params, num_clients: int | None = None) -> None:
        self.m = filled_like(global_params, 0.0)
        self.v = filled_like(global_params, self.tau**2)

    @abstractmethod
    def update_v(self, v: list[torch.Tensor], delta_sq: list[torch.Tensor]) -> None:
        """Update the second-moment estimate ``v`` in place from Delta^2 (one tensor per parameter)."""

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        keys = list(global_params)
        delta = [mean_delta(global_params, updates)[k] for k in keys]
        m = [self.m[k] for k in keys]
        v = [self.v[k] for k in keys]
        torch._foreach_mul_(m, self.beta1)
        torch._foreach_add_(m, delta, alpha=1 - self.beta1)
        self.update_v(v, list(torch._foreach_mul(delta, delta)))  # the stub says tuple
        denom = torch._foreach_sqrt(v)
        torch._foreach_add_(denom, self.tau)
        step = torch._foreach_div(m, denom)
        return dict(zip(keys, torch._foreach_add([global_params[k] for k in keys], step, alpha=self.server_lr)))

    def state_dict(self) -> Params:
        return export_state("m", self.m) | export_state("v", self.v)

    def load_state_dict(self, state: Params) -> None:
        import_state("m", state, self.m)
        import_state("v", state, self.v)
