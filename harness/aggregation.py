"""Server-side arithmetic shared by aggregators, vectorised over the adapter's tensors.

Aggregators work on ``Params`` dicts whose key order is the adapter's; ``torch._foreach_*``
applies each operation to all tensors in one call, on whatever device they live on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import ClientUpdate, Params


def example_weights(updates: Sequence[ClientUpdate]) -> list[float]:
    """n_i / n: each client counts in proportion to its number of examples."""
    total = sum(u.num_examples for u in updates)
    return [u.num_examples / total for u in updates]


def weighted_mean(tensor_sets: Sequence[Params], weights: Sequence[float]) -> Params:
    """sum_i w_i x_i over dicts of tensors with the same keys."""
    keys = list(tensor_sets[0])
    acc = [torch.zeros_like(tensor_sets[0][k]) for k in keys]
    for params, w in zip(tensor_sets, weights):
        torch._foreach_add_(acc, [params[k] for k in keys], alpha=w)
    return dict(zip(keys, acc))


def mean_delta(global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
    """Delta = sum_i (n_i/n) (x_i - x): the pseudo-gradient adaptive server optimizers step along.

    Delta lives where the global adapter (and so the server state) does: client adapters read
    from a model the trainer moved to the GPU are brought over to the global adapter's device.
    """
    mean = weighted_mean([u.params for u in updates], example_weights(updates))
    keys = list(global_params)
    x = [global_params[k] for k in keys]
    return dict(zip(keys, torch._foreach_sub(placed_like([mean[k] for k in keys], x), x)))


def stacked(global_params: Params, updates: Sequence[ClientUpdate]) -> Params:
    """Each parameter name -> the clients' tensors stacked on a new first dimension (client order), placed like
    the global adapter's: what a coordinate-wise rule (median, trimmed mean) sorts along."""
    return {k: torch.stack(placed_like([u.params[k] for u in updates], [ref] * len(updates))) for k, ref in global_params.items()}


def flat_deltas(global_params: Params, updates: Sequence[ClientUpdate]) -> torch.Tensor:
    """The clients' updates x_i - x as the rows of one float64 matrix (clients x adapter size): what a rule that
    measures whole updates (Krum's distances, a norm bound) reads; float64 so sums of squares stay exact enough."""
    rows = [
        torch.cat([(u.params[k].to(ref.device, torch.float64) - ref.double()).flatten() for k, ref in global_params.items()])
        for u in updates
    ]
    return torch.stack(rows)


def scaled_sum(global_params: Params, updates: Sequence[ClientUpdate], weights: Sequence[float]) -> Params:
    """x + sum_i w_i (x_i - x): the global adapter moved by a weighted sum of the updates (weights need not sum to 1)."""
    keys = list(global_params)
    x = [global_params[k] for k in keys]
    acc = [t.clone() for t in x]
    for update, w in zip(updates, weights):
        torch._foreach_add_(acc, torch._foreach_sub(placed_like([update.params[k] for k in keys], x), x), alpha=w)
    return dict(zip(keys, acc))


@dataclass(frozen=True)
class Rejection:
    client_id: str
    reason: str


def validate_updates(global_params: Params, updates: Sequence[ClientUpdate]) -> tuple[list[ClientUpdate], list[Rejection]]:
    """Split updates into usable ones and rejections (wrong keys, shapes or dtypes; NaN or Inf)."""
    accepted: list[ClientUpdate] = []
    rejected: list[Rejection] = []
    for update in updates:
        reason = _problem(global_params, update)
        if reason:
            rejected.append(Rejection(update.client_id, reason))
            continue
        accepted.append(update)
    return accepted, rejected


def _problem(global_params: Params, update: ClientUpdate) -> str | None:
    if update.params.keys() != global_params.keys():
        missing = sorted(global_params.keys() - update.params.keys())[:3]
        extra = sorted(update.params.keys() - global_params.keys())[:3]
        return f"parameter names differ from the global adapter (missing {missing}, unexpected {extra})"
    if update.num_examples <= 0:
        return f"reports {update.num_examples} examples"
    for name, tensor in update.params.items():
        ref = global_params[name]
        if tensor.shape != ref.shape or tensor.dtype != ref.dtype:
            return f"'{name}' is {tuple(tensor.shape)} {tensor.dtype}, expected {tuple(ref.shape)} {ref.dtype}"
    # params and extras separately: extras may reuse the parameter names (SCAFFOLD's Delta c_i)
    for where, tensors in (("", update.params), ("extras ", update.extras)):
        for name, tensor in tensors.items():
            if not bool(torch.isfinite(tensor).all()):
                return f"{where}'{name}' contains NaN or Inf (diverged local training; try a lower learning rate)"
    return None


def params_nbytes(params: Params) -> int:
    """Bytes a set of tensors takes on the wire (communication accounting)."""
    return sum(t.numel() * t.element_size() for t in params.values())


def filled_like(params: Params, value: float = 0.0) -> Params:
    """Server state shaped like the adapter (same keys, order, dtype and device), filled with ``value``."""
    return {k: torch.full_like(t, value) for k, t in params.items()}


def export_state(prefix: str, params: Params) -> Params:
    """``{"<prefix>/<name>": tensor}``: state as flat, contiguous copies that share no storage (safetensors-safe)."""
    return {f"{prefix}/{k}": t.detach().contiguous().clone() for k, t in params.items()}


def import_state(prefix: str, state: Params, into: Params) -> None:
    """Copy ``"<prefix>/<name>"`` entries of ``state`` into ``into`` in place (keeping its device and dtype).

    A missing entry means the checkpoint was written by another aggregator or for another adapter,
    so it is refused rather than silently restarted from fresh state.
    """
    missing = [k for k in into if f"{prefix}/{k}" not in state]
    if missing:
        raise FedbenchError(
            f"the checkpoint's server state has no '{prefix}/{missing[0]}' "
            f"({len(missing)} of {len(into)} '{prefix}' entries missing)",
            "resume with the aggregator and LoRA settings the run was started with, or rerun with --force",
        )
    with torch.no_grad():
        for k, t in into.items():
            t.copy_(state[f"{prefix}/{k}"])  # copy_ also moves a CPU checkpoint onto the state's device


def gradients(params: Mapping[str, torch.nn.Parameter], keys: Sequence[str]) -> list[torch.Tensor]:
    """The ``.grad`` of each named parameter, in ``keys`` order, for a client hook to change in place.

    A parameter the loss did not reach has no gradient yet; it gets a zero one, so a correction
    term (FedProx's pull, SCAFFOLD's drift correction) still applies to it.
    """
    grads = []
    for k in keys:
        p = params[k]
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    return grads


def placed_like(tensors: Sequence[torch.Tensor], like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``tensors`` on the devices and dtypes of ``like`` (no copy when they already match)."""
    return [t.to(device=r.device, dtype=r.dtype) for t, r in zip(tensors, like)]
