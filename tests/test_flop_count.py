"""benchmarks/profile_step.py's FLOP count: body and attention per real token, the vocabulary head per labelled one."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import profile_step  # noqa: E402

CONFIG = SimpleNamespace(
    hidden_size=8, num_hidden_layers=2, num_key_value_heads=1, num_attention_heads=2, intermediate_size=16, vocab_size=100
)


def test_a_labelled_forward_is_credited_its_head_and_its_backward_the_same_again() -> None:
    flops = profile_step.Flops(CONFIG)
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    labels = torch.tensor([[-100, -100, 5, -100], [-100, 7, 8, 9]])  # 1 + 3 positions scored after TRL's shift
    flops.count(True, mask)
    without_head = dict(flops.totals)
    flops = profile_step.Flops(CONFIG)
    flops.count(True, mask, labels)
    head = 2 * 8 * 100 * 4
    assert flops.totals["forward_grad"] == without_head["forward_grad"] + head
    assert flops.totals["backward"] == without_head["backward"] + head
    body = 2 * (2 * (2 * 8 * 8 + 2 * 8 * 4 + 3 * 8 * 16)) * 7  # 7 real tokens
    attention = 4 * 2 * 8 * (3**2 + 4**2)
    assert without_head["forward_grad"] == body + attention
    assert flops.totals["forward_grad_tokens"] == 7
