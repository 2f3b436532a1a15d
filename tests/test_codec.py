"""Codecs on small random tensors: round-trip error within each codec's step, bytes on the wire, error feedback."""

from __future__ import annotations

import math

import pytest
import torch

from fedbench.harness.codec import decode_update, encode_update
from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Codec, Encoded, Params
from fedbench.harness.registry import load_registry
from fedbench.plugins.codecs.half import Bf16 as Bf16Codec
from fedbench.plugins.codecs.half import Fp16 as Fp16Codec
from fedbench.plugins.codecs.int8 import Int8 as Int8Codec
from fedbench.plugins.codecs.none import NoneCodec
from fedbench.plugins.codecs.topk import TopK as TopKCodec


def make_codec(name: str, **settings: object) -> Codec:
    return load_registry(entry_points=False).create("codec", name, settings)


def residual(codec: Codec, client: str) -> Params:
    return codec.client_states.get(client) or {}


SHAPES = {"a.lora_A.weight": (8, 64), "a.lora_B.weight": (64, 8), "bias": (7,)}


def tensors(seed: int, scale: float = 1.0) -> Params:
    g = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(shape, generator=g) for k, shape in SHAPES.items()}


def float32_bytes(params: Params) -> int:
    return sum(t.numel() * 4 for t in params.values())


X = tensors(0, scale=0.02)


def test_none_is_bit_exact() -> None:
    codec = NoneCodec()
    encoded = codec.encode(X, "c0")
    out = codec.decode(encoded)
    assert list(out) == list(X)
    assert all(torch.equal(out[k], X[k]) and out[k].dtype == torch.float32 for k in X)
    assert encoded.nbytes == float32_bytes(X)


@pytest.mark.parametrize("block_size", [None, 16, 5])
def test_int8_round_trips_within_half_a_step(block_size: int | None) -> None:
    codec = Int8Codec(block_size=block_size)
    encoded = codec.encode(X, "c0")
    out = codec.decode(encoded)
    for k, x in X.items():
        assert out[k].shape == x.shape and out[k].dtype == x.dtype
        flat, got = x.reshape(-1), out[k].reshape(-1)
        block = flat.numel() if block_size is None else block_size
        for start in range(0, flat.numel(), block):
            part = flat[start : start + block]
            step = float(part.abs().max()) / 127
            assert float((part - got[start : start + block]).abs().max()) <= step / 2 + 1e-7
        assert encoded.arrays[k].dtype == torch.int8
    scales = sum(math.ceil(t.numel() / (t.numel() if block_size is None else block_size)) for t in X.values())
    assert encoded.nbytes == sum(t.numel() for t in X.values()) + 4 * scales


def test_int8_block_wise_is_finer_when_one_entry_is_large() -> None:
    x = {"w": torch.linspace(-1e-3, 1e-3, 256)}
    x["w"][0] = 1.0
    per_tensor = Int8Codec().decode(Int8Codec().encode(x, "c"))
    blocked = Int8Codec(block_size=32).decode(Int8Codec(block_size=32).encode(x, "c"))
    # outside the large entry's block, block-wise steps follow the small entries' own absmax
    rest = slice(32, None)
    assert float((blocked["w"] - x["w"])[rest].abs().max()) < float((per_tensor["w"] - x["w"])[rest].abs().max()) / 100


def test_int8_nbytes_is_about_a_quarter() -> None:
    big = {"w": torch.randn(4096)}
    codec = Int8Codec()
    assert codec.encode(big, "c").nbytes == 4096 + 4  # one float32 scale


def test_int8_keeps_zeros_zero() -> None:
    zeros = {"w": torch.zeros(3, 4), "empty": torch.zeros(0)}
    for codec in (Int8Codec(), Int8Codec(block_size=5)):
        out = codec.decode(codec.encode(zeros, "c"))
        assert torch.equal(out["w"], zeros["w"]) and out["empty"].shape == (0,)


@pytest.mark.parametrize(("codec", "significant_bits"), [(Fp16Codec(), 11), (Bf16Codec(), 8)])
def test_half_precision_round_trips_within_precision(codec: Codec, significant_bits: int) -> None:
    encoded = codec.encode(X, "c0")
    out = codec.decode(encoded)
    for k, x in X.items():
        assert out[k].dtype == torch.float32 and out[k].shape == x.shape
        # round to nearest: relative error at most 2^-significant_bits; fp16's subnormals (below 6.1e-5) have
        # a fixed step of 2^-24 instead, so at most 2^-25 absolute
        assert torch.all((out[k] - x).abs() <= x.abs() * 2.0**-significant_bits + 2.0**-25)
    assert encoded.nbytes * 2 == float32_bytes(X)


def test_topk_sends_exactly_k_entries() -> None:
    codec = TopKCodec(fraction=0.1)
    encoded = codec.encode(X, "c0")
    out = codec.decode(encoded)
    for k, x in X.items():
        n = x.numel()
        sent = codec.k_for(n)
        assert sent == max(1, round(0.1 * n))
        assert encoded.arrays[f"{k}/indices"].numel() == sent and encoded.arrays[f"{k}/indices"].dtype == torch.int32
        assert int((out[k] != 0).sum()) == sent
        # the sent entries are the largest in magnitude, sent exactly
        assert float(x.abs().flatten().topk(sent).values.min()) <= float(out[k][out[k] != 0].abs().min())
        assert torch.equal(out[k][out[k] != 0], x[out[k] != 0])
    assert encoded.nbytes == sum(codec.k_for(t.numel()) * (4 + 4) for t in X.values())
    assert TopKCodec(fraction=0.01).k_for(1000) == 10


def test_topk_error_feedback_tracks_the_sum_of_updates() -> None:
    codec = TopKCodec(fraction=0.05)
    g = torch.Generator().manual_seed(3)
    drift = tensors(1, scale=0.01)  # a consistent direction, as local updates have, plus round-to-round noise
    true_sum = {k: torch.zeros_like(t) for k, t in X.items()}
    got_sum = {k: torch.zeros_like(t) for k, t in X.items()}
    residual_norms = []
    for _ in range(300):
        update = {k: drift[k] + 0.01 * torch.randn(t.shape, generator=g) for k, t in X.items()}
        decoded = codec.decode(codec.encode(update, "c0"))
        for k in X:
            true_sum[k] += update[k]
            got_sum[k] += decoded[k]
        left = residual(codec, "c0")
        residual_norms.append(math.sqrt(sum(float(r.pow(2).sum()) for r in left.values())))
        # nothing is lost: what has not arrived yet is exactly the residual
        for k in X:
            assert torch.allclose(true_sum[k].reshape(-1) - got_sum[k].reshape(-1), left[k], atol=1e-5)
    gap = math.sqrt(sum(float((true_sum[k] - got_sum[k]).pow(2).sum()) for k in X))
    total = math.sqrt(sum(float(t.pow(2).sum()) for t in true_sum.values()))
    assert gap / total < 0.05
    assert max(residual_norms[150:]) < 1.5 * max(residual_norms[:150])  # bounded, not growing


def test_topk_residual_is_per_client_and_kept_in_client_states() -> None:
    codec = TopKCodec(fraction=0.1)
    assert residual(codec, "c0") == {}
    codec.encode(tensors(1), "c0")
    codec.encode(tensors(2), "c1")
    assert not torch.equal(residual(codec, "c0")["bias"], residual(codec, "c1")["bias"])
    restored = TopKCodec(fraction=0.1)
    restored.client_states.put("c0", residual(codec, "c0"))
    nxt = tensors(5)
    a, b = codec.encode(nxt, "c0"), restored.encode(nxt, "c0")
    assert all(torch.equal(a.arrays[k], b.arrays[k]) for k in a.arrays)
    with pytest.raises(FedbenchError, match="residual of 7 entries"):
        codec.encode({**nxt, "bias": torch.zeros(9)}, "c0")


@pytest.mark.parametrize("name", ["none", "fp16", "bf16", "int8", "topk"])
def test_update_helpers_encode_the_delta(name: str) -> None:
    codec = make_codec(name)
    client = {k: X[k] + t for k, t in tensors(2, scale=1e-3).items()}
    encoded = encode_update(codec, X, client, "c0")
    assert isinstance(encoded, Encoded) and encoded.codec == name
    back = decode_update(codec, X, encoded)
    assert list(back) == list(X)
    if name == "none":
        assert all(torch.allclose(back[k], client[k], atol=0, rtol=1e-6) for k in X)
    if isinstance(codec, TopKCodec):  # the unsent entries stay at the global value
        assert int(sum(int((back[k] != X[k]).sum()) for k in X)) == sum(codec.k_for(t.numel()) for t in X.values())
    else:
        # the lossy codecs' error is relative to the small update, not to the adapter
        assert all(float((back[k] - client[k]).abs().max()) < 1e-4 for k in X)


def test_decoding_with_another_codec_is_refused() -> None:
    with pytest.raises(FedbenchError, match="'int8'"):
        Fp16Codec().decode(Int8Codec().encode(X, "c"))


@pytest.mark.parametrize("fraction", [0.0, -0.1, 1.5, math.nan])
def test_bad_topk_fraction_is_refused(fraction: float) -> None:
    with pytest.raises(FedbenchError) as err:
        TopKCodec(fraction=fraction)
    assert str(fraction) in str(err.value) and err.value.fix


@pytest.mark.parametrize("block_size", [0, -4, 2.5])
def test_bad_int8_block_size_is_refused(block_size: int) -> None:
    with pytest.raises(FedbenchError) as err:
        Int8Codec(block_size=block_size)
    assert str(block_size) in str(err.value) and err.value.fix


def test_unknown_codec_name_and_setting() -> None:
    with pytest.raises(FedbenchError, match="int8"):
        make_codec("int9")
    with pytest.raises(FedbenchError, match="block_size"):
        make_codec("topk", block_size=4)
    codec = make_codec("topk", fraction=0.5)
    assert isinstance(codec, TopKCodec) and codec.fraction == 0.5


def test_topk_keeps_its_residual_when_an_update_diverged() -> None:
    codec = TopKCodec(fraction=0.1)
    codec.encode(tensors(1), "c0")
    before = residual(codec, "c0")
    codec.encode({k: torch.full_like(t, float("nan")) for k, t in X.items()}, "c0")  # rejected by the server anyway
    after = residual(codec, "c0")
    assert all(torch.equal(before[k], after[k]) for k in before), "one diverged round does not poison later ones"
