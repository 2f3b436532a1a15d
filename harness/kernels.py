"""Faster CPU paths for the same maths: eager attention in training, the labelled positions' log-probabilities in
one pass over the vocabulary.

Both came out of profiling a local step of KTO and DPO on SmolLM2-135M at the study's shapes (batch
4, sequences of about 70 tokens, ``benchmarks/profile_step.py``), where per-operator cost rather
than matrix products decides the step time:

* **Attention.** PyTorch's CPU flash-attention kernel, which transformers' ``sdpa`` choice runs,
  has a slow backward at these lengths (14 ms per layer call at batch 4); transformers' ``eager``
  attention (a matrix product, softmax and matrix product) is used while training instead, and
  ``sdpa`` stays for generation and scoring outside training.
* **Log-probabilities.** See :func:`one_pass_log_probs_on_cpu`.

One client's 5 local steps on the demo data, the variants interleaved in one process (medians of
3, on a shared 2-core machine): KTO 6.1 s with both, 7.4 s with ``sdpa``; DPO 6.5 s with both,
7.6 s with ``sdpa``, 7.1 s with TRL's tiled log-probabilities.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch


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
