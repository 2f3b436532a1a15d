"""Codecs: how a client's update travels, what it costs on the wire, and the helpers codec plugins share.

A codec (a plugin kind, :class:`~fedbench.harness.interfaces.Codec`; built-ins in plugins/codecs/:
``none``, ``fp16``, ``bf16``, ``int8``, ``topk``) encodes the UPDATE x_i - x, not the adapter
itself: an update is small and centred at zero, which is what lossy codecs handle well, and the
server holds x already. :func:`encode_update` and :func:`decode_update` do that subtraction and
addition; the harness counts the encoded arrays' bytes as the client's upload (``bytes_up``), on
the local engine and on Flower alike (both call the client half, ``federation.train_one``).
"""

from __future__ import annotations

import torch

from fedbench.harness.aggregation import placed_like
from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Codec, Encoded, Params

_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "float64": torch.float64,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
}


def tensor_metadata(params: Params) -> tuple[dict[str, tuple[int, ...]], dict[str, str]]:
    """Each tensor's shape and dtype name, which an :class:`Encoded` carries so decoding can restore them."""
    return {k: tuple(t.shape) for k, t in params.items()}, {k: str(t.dtype).removeprefix("torch.") for k, t in params.items()}


def original_dtype(encoded: Encoded, name: str) -> torch.dtype:
    """The dtype tensor ``name`` had before encoding (floating-point tensors only)."""
    dtype_name = encoded.dtypes[name]
    if dtype_name not in _DTYPES:
        raise FedbenchError(
            f"encoded tensor '{name}' has dtype '{dtype_name}', which codec '{encoded.codec}' cannot restore",
            f"encode floating-point tensors only ({', '.join(_DTYPES)})",
        )
    return _DTYPES[dtype_name]


def encode_update(codec: Codec, global_params: Params, client_params: Params, client_id: str) -> Encoded:
    """Encode the client's update x_i - x (computed on the global adapter's devices and dtypes)."""
    keys = list(global_params)
    x = [global_params[k] for k in keys]
    delta = torch._foreach_sub(placed_like([client_params[k] for k in keys], x), x)
    return codec.encode(dict(zip(keys, delta)), client_id)


def decode_update(codec: Codec, global_params: Params, encoded: Encoded) -> Params:
    """The client params an encoded update stands for: x + decode(encoding)."""
    delta = codec.decode(encoded)
    keys = list(global_params)
    x = [global_params[k] for k in keys]
    return dict(zip(keys, torch._foreach_add(x, placed_like([delta[k] for k in keys], x))))


def travelling(
    codec: Codec | None, round_index: int, start: Params, params: Params, client_id: str
) -> tuple[Params, Encoded | None]:
    """A client's trained adapter as it travels: under a codec, its encoding and the decoded encoding (what the
    server will hold, so the client's own copy is that too); without one, as it is."""
    if codec is None:
        return params, None
    codec.client_states.at_round(round_index + 1)  # a codec's per-client memory (top-k's residual) of this round
    encoded = encode_update(codec, start, params, client_id)
    return decode_update(codec, start, encoded), encoded
