"""SCAFFOLD (Karimireddy et al. 2020): control variates that correct each client's drift."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence

import torch

from fedbench.api import (
    Aggregator,
    ClientHook,
    ClientUpdate,
    FedbenchError,
    Params,
    export_state,
    filled_like,
    gradients,
    hookimpl,
    import_state,
    mean_delta,
    placed_like,
)

CLIENT_STATE_DEVICE = torch.device("cpu")
"""Where a client's variate is read to: one adapter-sized tensor set per client, so not on the accelerator."""


class ControlVariateHook(ClientHook):
    """Client half: steps along g - c_i + c, then reports Delta c_i = (x - y)/(K lr) - c (option II)."""

    def __init__(self, global_params: Params, c: list[torch.Tensor], c_i: list[torch.Tensor]) -> None:
        self.keys = list(global_params)
        self.x = [t.detach() for t in global_params.values()]
        self.c = c
        self.correction: Sequence[torch.Tensor] = torch._foreach_sub(c, placed_like(c_i, c))

    @torch.no_grad()
    def on_gradients(self, params: Mapping[str, torch.nn.Parameter]) -> None:
        grads = gradients(params, self.keys)
        self.correction = placed_like(self.correction, grads)
        torch._foreach_add_(grads, self.correction)

    @torch.no_grad()
    def finish(self, update: ClientUpdate, steps: int, learning_rate: float) -> ClientUpdate:
        y = [update.params[k] for k in self.keys]
        if steps > 0 and learning_rate > 0:
            change = torch._foreach_sub(placed_like(self.x, y), y)
            torch._foreach_mul_(change, 1.0 / (steps * learning_rate))
            torch._foreach_sub_(change, placed_like(self.c, y))
        else:  # no step taken: nothing was learnt about the client's gradient, keep c_i
            change = tuple(torch.zeros_like(t) for t in y)
        return dataclasses.replace(update, extras=update.extras | dict(zip(self.keys, change)))


class Scaffold(Aggregator):
    """Control variates: clients step along g - c_i + c, server x <- x + eta_g Delta (Karimireddy et al. 2020, option II).

    Karimireddy, Kale, Mohri, Reddi, Stich and Suresh, "SCAFFOLD: Stochastic Controlled
    Averaging for Federated Learning", ICML 2020, Algorithm 1 with option II:
        client i, from y = x, K steps:  y <- y - lr (g_i(y) - c_i + c)
                                        c_i+ = c_i - c + (x - y) / (K lr);  Delta c_i = c_i+ - c_i
        server:  x <- x + eta_g sum_i (n_i/n)(y_i - x)
                 c <- c + (1/N) sum_{i in sampled} Delta c_i
    c and every c_i start at zero. The correction is added to the gradients right before each
    optimizer step (after clipping); with an adaptive local optimizer (the trainers' AdamW) it
    passes through that optimizer, where the paper assumes plain SGD. Unlike the paper's uniform
    mean, Delta y is weighted by n_i like every other fedbench rule, so with eta_g = 1
    (server_lr, the default) the server step is FedAvg's. A client's c_i changes only when its
    update is accepted: it is applied here, from ``update.extras``, not when the client finishes.
    N is the total number of clients: ``num_clients`` when set, else the federation's client
    count the harness passes to ``setup``; used standalone without either, N is the number of
    distinct clients whose updates have been accepted so far. Each c_i lives in
    :attr:`client_states` (during a run: one file per client in the run directory, written only
    in the rounds it changes), so memory and checkpoints hold c, not all the c_i.
    """

    name = "scaffold"
    needs_each_update = True

    def __init__(self, server_lr: float = 1.0, num_clients: int | None = None) -> None:
        if server_lr <= 0 or (num_clients is not None and num_clients < 1):
            raise FedbenchError(
                f"scaffold: got server_lr={server_lr}, num_clients={num_clients}", "use server_lr > 0 and num_clients >= 1"
            )
        self.server_lr = server_lr
        self.num_clients = num_clients
        self.c: Params = {}

    def setup(self, global_params: Params, num_clients: int | None = None) -> None:
        if self.num_clients is None:
            self.num_clients = num_clients
        self.c = filled_like(global_params, 0.0)

    def _client_variate(self, client_id: str) -> list[torch.Tensor]:
        stored = self.client_states.get(client_id)
        if stored is None:
            return [torch.zeros_like(t, device=CLIENT_STATE_DEVICE) for t in self.c.values()]
        return [stored[k] for k in self.c]

    def client_hook(self, client_id: str, global_params: Params) -> ClientHook:
        return ControlVariateHook(global_params, list(self.c.values()), self._client_variate(client_id))

    def client_state(self, client_id: str) -> Params:
        """c and this client's c_i only: the other clients' variates never leave the server."""
        state = export_state("c", self.c)
        variate = self.client_states.get(client_id)
        if variate is not None:
            state |= export_state(f"ci/{client_id}", variate)
        return state

    def aggregate(self, global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
        keys = list(global_params)
        for u in updates:
            if not set(keys) <= u.extras.keys():
                raise FedbenchError(
                    f"scaffold: the update from client '{u.client_id}' carries no control-variate change",
                    "train SCAFFOLD clients through the harness, which runs the aggregator's client hook",
                )
        seen = len(self.client_states.clients() | {u.client_id for u in updates})
        n = self.num_clients if self.num_clients is not None else seen
        if seen > n:
            raise FedbenchError(
                f"scaffold: num_clients is {n} but {seen} distinct clients have sent updates",
                "set num_clients to the partition's client count",
            )
        delta = mean_delta(global_params, updates)
        new_x = torch._foreach_add([global_params[k] for k in keys], [delta[k] for k in keys], alpha=self.server_lr)
        c = list(self.c.values())
        total_change = [torch.zeros_like(t) for t in c]
        for u in updates:
            change = [u.extras[k] for k in keys]
            torch._foreach_add_(total_change, placed_like(change, c))
            old = self._client_variate(u.client_id)
            self.client_states.put(u.client_id, dict(zip(keys, torch._foreach_add(old, placed_like(change, old)))))
        self.c = dict(zip(keys, torch._foreach_add(c, total_change, alpha=1.0 / n)))
        return dict(zip(keys, new_x))

    def state_dict(self) -> Params:
        return export_state("c", self.c)

    def load_state_dict(self, state: Params) -> None:
        """Restore c; ``ci/<client>/`` entries (what :meth:`client_state` sends a Flower client, or a checkpoint
        written before the per-client store) go to :attr:`client_states`."""
        import_state("c", state, self.c)
        clients = set()
        for key in state:
            if key.startswith("ci/"):
                client_id, name = key[len("ci/") :].rsplit("/", 1)
                if name not in self.c:
                    raise FedbenchError(
                        f"scaffold: checkpoint entry '{key}' names no adapter parameter",
                        "resume with the LoRA settings the run was started with",
                    )
                clients.add(client_id)
        for client_id in sorted(clients):
            variate = {k: torch.zeros_like(t, device=CLIENT_STATE_DEVICE) for k, t in self.c.items()}
            import_state(f"ci/{client_id}", state, variate)
            self.client_states.put(client_id, variate)


@hookimpl
def fedbench_aggregators() -> list[type[Aggregator]]:
    return [Scaffold]
