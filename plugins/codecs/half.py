"""16-bit float codecs: half the bytes of float32 updates."""

from __future__ import annotations

from typing import ClassVar

import torch

from fedbench.api import Codec, Encoded, Params, hookimpl, original_dtype, tensor_metadata


class _Cast(Codec):
    """Cast to a 16-bit float for the wire, back to the original dtype on decode."""

    wire_dtype: ClassVar[torch.dtype]

    def encode(self, params: Params, client_id: str) -> Encoded:
        shapes, dtypes = tensor_metadata(params)
        return Encoded(self.name, {k: t.detach().to(self.wire_dtype) for k, t in params.items()}, shapes, dtypes)

    def decode(self, encoded: Encoded) -> Params:
        self.check(encoded)
        return {k: encoded.arrays[k].to(original_dtype(encoded, k)) for k in encoded.shapes}


class Fp16(_Cast):
    """float16 updates: half the bytes; 11 significant bits, and values beyond 65504 become inf (then rejected)."""

    name = "fp16"
    wire_dtype = torch.float16


class Bf16(_Cast):
    """bfloat16 updates: half the bytes; float32's range, 8 significant bits."""

    name = "bf16"
    wire_dtype = torch.bfloat16


@hookimpl
def fedbench_codecs() -> list[type[Codec]]:
    return [Fp16, Bf16]
