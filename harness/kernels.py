"""Faster CPU paths for the same maths: LoRA dropout masks from 16-bit random words, eager attention in training,
the labelled positions' log-probabilities in one pass over the vocabulary.

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
* **Log-probabilities.** See :func:`one_pass_log_probs_on_cpu`.

In one process, interleaved (a KTO client's 5 steps on the demo data): 6.9 s with all three, 7.35 s
with TRL's tiled log-probabilities, 9.0 s with ``sdpa`` attention.
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


FULL_VOCAB_LIMIT = 1 << 24
"""Largest tokens x vocabulary product scored in one pass (64 MiB per float32 copy of the logits); TRL's chunked
kernel, which recomputes its tiles in the backward to bound memory, takes anything larger."""


@contextmanager
def one_pass_log_probs_on_cpu() -> Iterator[None]:
    """Score the labelled positions' log-probabilities in one pass over the vocabulary on a CPU, not in TRL's tiles.

    TRL 1.16's DPO and KTO trainers get per-token log-probabilities (and entropy, mean logit, top-1
    flags for their metrics) from ``ChunkedLogProbFunction``, which projects onto the vocabulary in
    tiles and, without Triton, folds each tile with a dozen full-width float32 passes, then
    recomputes every tile in the backward and accumulates each tile's gradient with a float32 copy
    of the head's weights: 105-160 ms per backward for 100 tokens of SmolLM2, where one bfloat16
    product and autograd take 21 ms. At the study's shapes the logits of the labelled positions are
    a few MiB, so here they are made once and autograd does the rest. The values are the same
    definitions (to float32 rounding: the test compares them); anything above
    :data:`FULL_VOCAB_LIMIT`, or on a GPU, still goes to TRL's kernel. Without that TRL function,
    nothing changes.
    """
    from trl.trainer import utils as trl_utils

    original = getattr(trl_utils, "_ChunkedLogProbFunction", None)
    if original is None:
        yield
        return
    trl_utils._ChunkedLogProbFunction = _OnePassLogProbs(original)  # type: ignore[misc,assignment]  # a stand-in object
    try:
        yield
    finally:
        trl_utils._ChunkedLogProbFunction = original  # type: ignore[misc]


class _OnePassLogProbs:
    """Stands in for TRL's ``ChunkedLogProbFunction`` (its ``apply`` signature and five outputs)."""

    def __init__(self, chunked: Any) -> None:
        self.chunked = chunked

    def apply(
        self,
        hidden: torch.Tensor,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        targets: torch.Tensor,
        temperature: float,
        chunk_size: int,
        final_logit_softcapping: float | None = None,
        logit_scale: float = 1.0,
        outputs: tuple[str, ...] = (),
    ) -> tuple[torch.Tensor | None, ...]:
        if hidden.device.type != "cpu" or hidden.shape[0] * weight.shape[0] > FULL_VOCAB_LIMIT:
            return self.chunked.apply(
                hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping, logit_scale, outputs
            )
        return vocabulary_log_probs(hidden, weight, bias, targets, temperature, final_logit_softcapping, logit_scale, outputs)


def vocabulary_log_probs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float = 1.0,
    softcap: float | None = None,
    logit_scale: float = 1.0,
    outputs: tuple[str, ...] = (),
) -> tuple[torch.Tensor | None, ...]:
    """Log-probability of each target under ``hidden @ weight.T (+ bias)``, plus the requested extras, in TRL's order.

    The logits are scaled by ``logit_scale``, soft-capped, divided by ``temperature`` and taken in
    float32; the product runs in the autocast dtype when autocast is on (as TRL's kernel does).
    Returns (log_probs, entropy, log_sum_sq_probs, mean_logits, is_top1), None for an extra not in
    ``outputs``; only log_probs and entropy carry gradients.
    """
    device = hidden.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
    logits = hidden.to(dtype) @ weight.to(dtype).t()
    if bias is not None:
        logits = logits + bias.to(dtype)
    z = logits.float() * logit_scale
    if softcap is not None:
        z = softcap * torch.tanh(z / softcap)
    z = z / temperature
    log_z = torch.logsumexp(z, dim=-1)
    log_probs = z.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - log_z
    entropy = log_z - (torch.softmax(z, dim=-1) * z).sum(-1) if "entropy" in outputs else None
    with torch.no_grad():
        log_sum_sq = torch.logsumexp(2 * z, dim=-1) - 2 * log_z if "log_sum_sq_probs" in outputs else None
        mean_logits = z.mean(-1) if "mean_logits" in outputs else None
        is_top1 = z.argmax(-1) == targets if "is_top1" in outputs else None  # argmax: the first of tied maxima
    return log_probs, entropy, log_sum_sq, mean_logits, is_top1
