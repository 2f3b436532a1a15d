"""The faster CPU paths keep the maths: attention switches back after training, one-pass log-probs match TRL's kernel."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedbench.harness.kernels import eager_attention_on_cpu
from fedbench.harness.models import load_base


def test_eager_attention_on_cpu_switches_and_restores(tiny_model: Path) -> None:
    model, _ = load_base(str(tiny_model), "float32")
    model.set_attn_implementation("sdpa")
    with eager_attention_on_cpu(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("softcap, scale, temperature, with_bias", [(None, 1.0, 1.0, False), (30.0, 0.5, 0.7, True)])
@pytest.mark.parametrize("tile_rows", [None, 8], ids=["one-tile", "tiles-of-8-rows"])
def test_one_pass_log_probs_match_trls_chunked_kernel(
    softcap: float | None,
    scale: float,
    temperature: float,
    with_bias: bool,
    tile_rows: int | None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from trl.kernels import ChunkedLogProbFunction

    from fedbench.harness import kernels
    from fedbench.harness.kernels import vocabulary_log_probs

    if tile_rows is not None:  # 37 rows in 5 tiles, the last one short
        monkeypatch.setattr(kernels, "TILE_ELEMENTS", tile_rows * 1000)

    torch.manual_seed(0)
    n, vocab, width = 37, 1000, 16
    weight = torch.randn(vocab, width) * 0.5
    bias = torch.randn(vocab) if with_bias else None
    targets = torch.randint(0, vocab, (n,))
    targets[0] = 0
    outputs = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
    results, grads = [], []
    for fn in (
        lambda h: ChunkedLogProbFunction.apply(h, weight, bias, targets, temperature, 256, softcap, scale, outputs),
        lambda h: vocabulary_log_probs(h, weight, bias, targets, temperature, softcap, scale, outputs),
    ):
        hidden = torch.randn(n, width, generator=torch.Generator().manual_seed(1), requires_grad=True)
        out = fn(hidden)
        (out[0].sum() + 0.3 * out[1].sum()).backward()
        results.append(out)
        grads.append(hidden.grad)
    for chunked, one_pass in zip(*results):
        assert chunked is not None and one_pass is not None
        assert torch.allclose(chunked.float(), one_pass.float(), atol=1e-4, rtol=1e-4)
    assert torch.allclose(grads[0], grads[1], atol=1e-4, rtol=1e-4)


def test_log_probs_only_leaves_the_log_probs_and_drops_the_extras_for_its_duration() -> None:
    from fedbench.harness.kernels import log_probs_only, log_probs_only_in, vocabulary_log_probs

    torch.manual_seed(0)
    hidden, weight, targets = torch.randn(5, 8), torch.randn(50, 8), torch.randint(0, 50, (5,))
    outputs = ("entropy", "mean_logits")
    full = vocabulary_log_probs(hidden, weight, None, targets, outputs=outputs)
    with log_probs_only():
        lean = vocabulary_log_probs(hidden, weight, None, targets, outputs=outputs)
    wrapped = log_probs_only_in(vocabulary_log_probs)(hidden, weight, None, targets, outputs=outputs)
    after = vocabulary_log_probs(hidden, weight, None, targets, outputs=outputs)
    for out in (lean, wrapped):
        assert torch.equal(out[0], full[0]) and all(x is None for x in out[1:])
    assert after[1] is not None and after[3] is not None


def test_under_bfloat16_autocast_the_tiles_match_trls_kernel() -> None:
    """The training path on a CPU with AMX: bfloat16 logits, normalised in float32 tile by tile."""
    from trl.kernels import ChunkedLogProbFunction

    from fedbench.harness.kernels import vocabulary_log_probs

    torch.manual_seed(0)
    n, vocab, width = 29, 3000, 32
    weight, targets = torch.randn(vocab, width) * 0.3, torch.randint(0, vocab, (n,))
    outputs = ("entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
    results = []
    for fn in (
        lambda h: ChunkedLogProbFunction.apply(h, weight, None, targets, 1.0, 256, None, 1.0, outputs),
        lambda h: vocabulary_log_probs(h, weight, None, targets, outputs=outputs),
    ):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            results.append(fn(torch.randn(n, width, generator=torch.Generator().manual_seed(1))))
    for trl_value, ours in zip(*results):
        assert trl_value is not None and ours is not None
        assert torch.allclose(trl_value.float(), ours.float(), atol=2e-3, rtol=2e-3)
    empty = vocabulary_log_probs(torch.zeros(0, width), weight, None, targets[:0], outputs=outputs)
    assert all(out is not None and out.shape == (0,) for out in empty)


def test_a_kto_client_skips_the_extras_only_on_its_reference_and_kl_passes(
    tiny_model: Path, pairs_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRL's KL pass and the reference scoring read log-probs alone; the policy forward keeps the metrics' extras."""
    from fedbench.harness import kernels, training
    from fedbench.harness.federation import build_cell, partition
    from fedbench.harness.interfaces import LocalTrainingArgs
    from fedbench.harness.models import attach_lora, fresh_adapter
    from fedbench.harness.refcache import ReferenceCache
    from fedbench.harness.registry import load_registry
    from fedbench.harness.spec import RunSpec

    spec = RunSpec(model=str(tiny_model), data=str(pairs_file), method="kto", layout="original", max_length=64, lora_r=4)
    cell = build_cell(spec, load_registry(entry_points=False))
    dataset = training.to_dataset(cell.method.records(partition(cell, for_rounds=False)["user0"], spec.template))
    calls: list[tuple[bool, bool]] = []
    original = kernels.vocabulary_log_probs

    def spy(*args: object, **kwargs: object) -> tuple[torch.Tensor | None, ...]:
        out = original(*args, **kwargs)  # type: ignore[arg-type]
        calls.append((torch.is_grad_enabled(), out[1] is not None))  # (with gradients, entropy computed)
        return out

    monkeypatch.setattr(kernels, "vocabulary_log_probs", spy)
    model, tokenizer = load_base(spec.model, "float32")
    peft = attach_lora(model, spec.lora)
    fresh_adapter(peft, 0)
    args = LocalTrainingArgs(str(tmp_path), 2, 4, 1, 1e-3, 64, 0, bf16=False, gradient_checkpointing=False)
    training.train_client(cell.method, peft, tokenizer, dataset, args, reference=ReferenceCache.for_run(None, cell.method, spec))
    assert (True, True) in calls and (False, False) in calls
    assert all(grad == extras for grad, extras in calls), calls
