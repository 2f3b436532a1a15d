"""Top-k sparsification of updates with error feedback kept on the client."""

from __future__ import annotations

import math
from typing import Any

import torch

from fedbench.api import Codec, Encoded, FedbenchError, Params, hookimpl, original_dtype, tensor_metadata


class TopK(Codec):
    """top-k updates: each tensor sends its `fraction` largest-magnitude entries; the rest is fed back next time.

    What is not sent is not lost: the client keeps it as a residual (in ``client_states``, so the
    harness checkpoints it per client and a resumed run is exact) and adds it to its next update
    (error feedback, Stich et al. 2018; Karimireddy et al. 2019), so over rounds the sum of what
    arrived tracks the sum of the true updates. Indices travel as int32 (int64 past 2^31 entries).
    """

    name = "topk"
    keeps_client_state = True

    def __init__(self, fraction: float = 0.01) -> None:
        if not 0 < fraction <= 1:  # also catches NaN
            raise FedbenchError(
                f"topk codec: fraction is {fraction}; it must lie in (0, 1]",
                "set fraction to the share of entries to send per tensor (e.g. 0.01), at most 1",
            )
        self.fraction = fraction

    def settings(self) -> dict[str, Any]:
        return {"fraction": self.fraction}

    def k_for(self, numel: int) -> int:
        """Entries sent for a tensor of ``numel`` entries: ``fraction`` of them, rounded, at least one."""
        return min(numel, max(1, round(self.fraction * numel)))

    def encode(self, params: Params, client_id: str) -> Encoded:
        shapes, dtypes = tensor_metadata(params)
        residual = self.client_states.get(client_id) or {}
        arrays: dict[str, torch.Tensor] = {}
        kept: Params = {}
        for k, t in params.items():
            flat = t.detach().reshape(-1).clone()
            if k in residual:
                if residual[k].numel() != flat.numel():
                    raise FedbenchError(
                        f"topk codec: client '{client_id}' has a residual of {residual[k].numel()} entries for '{k}', "
                        f"which now has {flat.numel()}",
                        "resume with the LoRA settings the run was started with, or start the run afresh",
                    )
                flat += residual[k].reshape(-1).to(flat)
            index = torch.topk(flat.abs(), self.k_for(flat.numel()), sorted=False).indices
            arrays[f"{k}/indices"] = index.to(torch.int32 if flat.numel() < 2**31 else torch.int64)
            arrays[f"{k}/values"] = flat[index]
            flat[index] = 0
            kept[k] = flat
        if all(bool(torch.isfinite(t).all()) for t in kept.values()):  # a diverged update is rejected: keep the old residual
            self.client_states.put(client_id, kept)
        return Encoded(self.name, arrays, shapes, dtypes, self.settings())

    def decode(self, encoded: Encoded) -> Params:
        self.check(encoded)
        out: Params = {}
        for k, shape in encoded.shapes.items():
            values = encoded.arrays[f"{k}/values"]
            flat = torch.zeros(math.prod(shape), dtype=values.dtype, device=values.device)
            flat[encoded.arrays[f"{k}/indices"].long()] = values
            out[k] = flat.reshape(shape).to(original_dtype(encoded, k))
        return out


@hookimpl
def fedbench_codecs() -> list[type[Codec]]:
    return [TopK]
