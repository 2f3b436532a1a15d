"""Absmax int8 quantization of updates: about a quarter of float32's bytes."""

from __future__ import annotations

import math
from typing import Any

import torch

from fedbench.api import Codec, Encoded, FedbenchError, Params, hookimpl, original_dtype, tensor_metadata


class Int8(Codec):
    """int8 updates: q = round(x / s), s = absmax / 127 per tensor (or per block of block_size entries).

    About a quarter of float32's bytes, plus one float32 scale per tensor (or per block). Every
    entry is restored within s / 2. Block-wise scales keep one large entry from coarsening the
    whole tensor's step.
    """

    name = "int8"

    def __init__(self, block_size: int | None = None) -> None:
        if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1):
            raise FedbenchError(
                f"int8 codec: block_size is {block_size!r}; it must be an integer >= 1",
                "set block_size to a positive number of entries (e.g. 64), or leave it unset for one scale per tensor",
            )
        self.block_size = block_size

    def settings(self) -> dict[str, Any]:
        return {"block_size": self.block_size}

    @staticmethod
    def _block(numel: int, block_size: int | None) -> int:
        return max(1, numel if block_size is None else block_size)

    def encode(self, params: Params, client_id: str) -> Encoded:
        shapes, dtypes = tensor_metadata(params)
        arrays: dict[str, torch.Tensor] = {}
        for k, t in params.items():
            flat = t.detach().reshape(-1).to(torch.float32)
            block = self._block(flat.numel(), self.block_size)
            blocks = max(1, math.ceil(flat.numel() / block))
            rows = torch.nn.functional.pad(flat, (0, blocks * block - flat.numel())).reshape(blocks, block)
            scale = rows.abs().amax(dim=1) / 127
            safe = torch.where(scale > 0, scale, torch.ones_like(scale))  # an all-zero block stays zero
            arrays[k] = torch.round(rows / safe[:, None]).clamp_(-127, 127).to(torch.int8).reshape(-1)[: flat.numel()]
            arrays[f"{k}/scale"] = scale
        return Encoded(self.name, arrays, shapes, dtypes, self.settings())

    def decode(self, encoded: Encoded) -> Params:
        self.check(encoded)
        out: Params = {}
        for k, shape in encoded.shapes.items():
            q, scale = encoded.arrays[k], encoded.arrays[f"{k}/scale"]
            block = self._block(q.numel(), encoded.settings.get("block_size"))
            scales = scale.repeat_interleave(block)[: q.numel()]
            out[k] = (q.to(torch.float32) * scales).reshape(shape).to(original_dtype(encoded, k))
        return out


@hookimpl
def fedbench_codecs() -> list[type[Codec]]:
    return [Int8]
