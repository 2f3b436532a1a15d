"""Faster CPU paths for the same maths: LoRA dropout masks from 16-bit random words, eager attention in training.

Both came out of profiling a local step of KTO and DPO on SmolLM2-135M at the study's shapes (batch
4, sequences of about 70 tokens, ``benchmarks/profile_step.py``), where per-operator cost rather
than matrix products decides the step time:

* **LoRA dropout.** PyTorch's CPU dropout draws its mask with ``bernoulli_``, one Mersenne-Twister
  draw per element: about 2 ms for one [4, 72, 576] input, 60 of them per forward (q and v of 30
  layers), close to 30% of a no-grad forward. :class:`WordDropout` draws 64-bit words instead and
  reads four 16-bit lanes from each, about 5x cheaper. An element is dropped when its lane falls
  below ``round(p * 65536)``, so the drop probability is p to within 2^-17 (0.05 becomes
  0.0500031), and kept elements are scaled by the inverse of the keep probability actually used.
  On a GPU, PyTorch's own dropout (a fused Philox kernel) is kept.
* **Attention.** PyTorch's CPU flash-attention kernel, which transformers' ``sdpa`` choice runs,
  has a slow backward at these lengths: a training step with transformers' ``eager`` attention (a
  matrix product, softmax and matrix product) took 0.45 s instead of 0.73 s at batch 4 and 1.0 s
  instead of 1.55 s at batch 8 (``sdpa`` stays for generation and scoring outside training).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

LANES = 1 << 16
"""Values one 16-bit lane takes: the resolution of :class:`WordDropout`'s drop probability."""


class WordDropout(nn.Module):
    """Inverted dropout whose CPU mask is read from 16-bit lanes of 64-bit random words.

    Same contract as ``nn.Dropout(p)`` in training mode (each element dropped independently,
    survivors scaled so the expectation is unchanged), identity in eval mode.
    """

    def __init__(self, p: float) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.dropped_lanes = round(p * LANES)
        self.scale = LANES / (LANES - self.dropped_lanes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.dropped_lanes == 0:
            return x
        if x.device.type != "cpu":
            return nn.functional.dropout(x, self.p, training=True)
        n = x.numel()
        words = torch.empty((n + 3) // 4, dtype=torch.int64).random_(-(2**63), None)  # from the int64 minimum: all 64 bits
        lanes = words.view(torch.int16)[:n].view(x.shape)  # uniform on [-32768, 32767]
        drop = lanes < self.dropped_lanes - LANES // 2
        return x.mul(self.scale).masked_fill_(drop, 0.0)

    def extra_repr(self) -> str:
        return f"p={self.p}, effective p={self.dropped_lanes / LANES:.7f}"


def use_word_dropout(model: nn.Module) -> int:
    """Replace PEFT's LoRA dropout modules in ``model`` by :class:`WordDropout` of the same p; returns how many."""
    replaced = 0
    for module in model.modules():
        dropouts = getattr(module, "lora_dropout", None)
        if not isinstance(dropouts, nn.ModuleDict):
            continue
        for name, dropout in list(dropouts.items()):
            if isinstance(dropout, nn.Dropout):
                dropouts[name] = WordDropout(dropout.p)
                replaced += 1
    return replaced


@contextmanager
def eager_attention_on_cpu(model: Any) -> Iterator[None]:
    """Train with transformers' ``eager`` attention when the model is on a CPU; the previous choice is restored after.

    ``model`` is the PEFT wrapper or the transformers model; a model whose attention cannot be
    switched (no ``set_attn_implementation``) or that runs on a GPU is left as it is.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    before = getattr(getattr(base, "config", None), "_attn_implementation", None)
    on_cpu = next(base.parameters()).device.type == "cpu"
    if not on_cpu or before in (None, "eager") or not hasattr(base, "set_attn_implementation"):
        yield
        return
    base.set_attn_implementation("eager")
    try:
        yield
    finally:
        base.set_attn_implementation(before)
