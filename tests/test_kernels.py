"""The faster CPU paths keep the maths: LoRA dropout drops at rate p and keeps the expectation; attention switches back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fedbench.harness.kernels import LANES, WordDropout, eager_attention_on_cpu, use_word_dropout
from fedbench.harness.models import LoraSettings, attach_lora, load_base


def test_word_dropout_drops_at_rate_p_and_keeps_the_expectation() -> None:
    torch.manual_seed(0)
    dropout = WordDropout(0.05).train()
    x = torch.ones(1_000_003)  # not a multiple of the four lanes a word gives
    y = dropout(x)
    dropped = (y == 0).double().mean().item()
    assert abs(dropped - 0.05) < 0.002  # 4.6 standard deviations at this size
    kept = y[y != 0]
    assert torch.allclose(kept, torch.full_like(kept, LANES / (LANES - round(0.05 * LANES))))
    assert abs(y.double().mean().item() - 1.0) < 0.003


def test_word_dropout_is_seeded_shaped_and_differentiable() -> None:
    x = torch.randn(3, 5, 7, requires_grad=True)
    dropout = WordDropout(0.3).train()
    torch.manual_seed(1)
    first = dropout(x)
    torch.manual_seed(1)
    assert torch.equal(first, dropout(x))
    assert first.shape == x.shape
    first.sum().backward()
    assert x.grad is not None
    assert torch.equal(x.grad == 0, first == 0)  # no gradient through a dropped element, the scale through the rest


def test_word_dropout_is_the_identity_in_eval_mode_and_at_p_zero() -> None:
    x = torch.randn(4, 9)
    assert torch.equal(WordDropout(0.5).eval()(x), x)
    assert torch.equal(WordDropout(0.0).train()(x), x)
    with pytest.raises(ValueError, match="dropout probability"):
        WordDropout(1.0)


def test_attach_lora_uses_word_dropout(tiny_model: Path) -> None:
    model, _ = load_base(str(tiny_model), "float32")
    peft_model = attach_lora(model, LoraSettings(r=4, alpha=8, dropout=0.1, targets=("q_proj", "v_proj")))
    dropouts = [d for m in peft_model.modules() if hasattr(m, "lora_dropout") for d in m.lora_dropout.values()]
    assert dropouts and all(isinstance(d, WordDropout) and d.p == 0.1 for d in dropouts)
    assert use_word_dropout(peft_model) == 0  # already replaced: nothing left to swap


def test_eager_attention_on_cpu_switches_and_restores(tiny_model: Path) -> None:
    model, _ = load_base(str(tiny_model), "float32")
    model.set_attn_implementation("sdpa")
    with eager_attention_on_cpu(model):
        assert model.config._attn_implementation == "eager"
    assert model.config._attn_implementation == "sdpa"


@pytest.mark.parametrize("softcap, scale, temperature, with_bias", [(None, 1.0, 1.0, False), (30.0, 0.5, 0.7, True)])
def test_one_pass_log_probs_match_trls_chunked_kernel(
    softcap: float | None, scale: float, temperature: float, with_bias: bool
) -> None:
    from trl.kernels import ChunkedLogProbFunction

    from fedbench.harness.kernels import vocabulary_log_probs

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
