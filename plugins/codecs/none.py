"""The identity codec: updates travel as they are."""

from __future__ import annotations

from fedbench.api import Codec, Encoded, Params, hookimpl, tensor_metadata


class NoneCodec(Codec):
    """No codec: tensors travel as they are (float32 for LoRA adapters), bit-exact."""

    name = "none"

    def encode(self, params: Params, client_id: str) -> Encoded:
        shapes, dtypes = tensor_metadata(params)
        return Encoded(self.name, {k: t.detach().clone() for k, t in params.items()}, shapes, dtypes)

    def decode(self, encoded: Encoded) -> Params:
        self.check(encoded)
        return {k: encoded.arrays[k].clone() for k in encoded.shapes}


@hookimpl
def fedbench_codecs() -> list[type[Codec]]:
    return [NoneCodec]
