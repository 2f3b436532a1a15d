"""FedProx (Li et al. 2020): FedAvg on the server, a proximal pull towards the global adapter on clients."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from fedbench.api import (
    Aggregator,
    ClientHook,
    ClientUpdate,
    FedbenchError,
    Params,
    example_weights,
    gradients,
    hookimpl,
    placed_like,
    weighted_mean,
)


class ProximalHook(ClientHook):
    """Adds mu (w - x) to each gradient: the gradient of (mu/2)||w - x||^2, without touching the method's loss."""

    def __init__(self, global_params: Params, mu: float) -> None:
        self.keys = list(global_params)
        self.anchor = [t.detach() for t in global_params.values()]
        self.mu = mu

    @torch.no_grad()
    def on_gradients(self, params: Mapping[str, torch.nn.Parameter]) -> None:
        weights = [params[k].detach() for k in self.keys]
        self.anchor = placed_like(self.anchor, weights)  # a resumed global adapter may sit on the CPU
        torch._foreach_add_(gradients(params, self.keys), torch._foreach_sub(weights, self.anchor), alpha=self.mu)


class FedProx(Aggregator):
    """FedAvg plus a proximal term (mu/2)||w - x||^2 in each client's objective (Li et al. 2020).

    Li, Sahu, Zaheer, Sanjabi, Talwalkar and Smith, "Federated Optimization in Heterogeneous
    Networks", MLSys 2020:
        client: min_w f_i(w) + (mu/2) ||w - x||^2, i.e. grad <- grad + mu (w - x) before every
                optimizer step (x = the round's global adapter, held fixed during the round)
        server: x <- sum_i (n_i/n) x_i   (FedAvg)
    The term is added to the gradients (after clipping, right before the step) rather than to
    the loss, so it works with any method's trainer. mu (default 0.01) must be >= 0; with mu = 0
    there is no client hook at all and training is exactly FedAvg's.
    """

    name = "fedprox"

    def __init__(self, mu: float = 0.01) -> None:
        if mu < 0:
            raise FedbenchError(f"fedprox: mu is {mu}", "use mu >= 0 (the paper tries 0.001, 0.01, 0.1, 1)")
        self.mu = mu

    def client_hook(self, client_id: str, global_params: Params) -> ClientHook | None:
        return ProximalHook(global_params, self.mu) if self.mu > 0 else None

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        return weighted_mean([u.params for u in updates], example_weights(updates))


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [FedProx]
