"""Training a client leaves no hooks or forward wrappers behind on the shared model: cost and call depth stay flat."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

from fedbench.harness.federation import build_cell, partition
from fedbench.harness.interfaces import LocalTrainingArgs
from fedbench.harness.models import attach_lora, load_base
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec
from fedbench.harness.training import to_dataset, train_client


def _wiring(model) -> list[tuple[str, int, int, object]]:  # noqa: ANN001 - a PEFT model
    """Per module: how many forward hooks and pre-hooks it has, and the forward set on the instance (if any)."""
    return [
        (name, len(m._forward_hooks), len(m._forward_pre_hooks), m.__dict__.get("forward")) for name, m in model.named_modules()
    ]


def _call_depth(model, tokenizer) -> int:  # noqa: ANN001
    """Python frames between a plain forward call (as generation makes it) and the first decoder layer."""
    depth = []
    layer = next(m for n, m in model.named_modules() if n.endswith("layers.0"))

    def probe(*_: object) -> None:
        frame, n = sys._getframe(), 0
        while frame is not None:
            frame, n = frame.f_back, n + 1
        depth.append(n)

    handle = layer.register_forward_pre_hook(probe)
    try:
        with torch.no_grad():
            model(**tokenizer(["hello there"], return_tensors="pt"))
    finally:
        handle.remove()
    return depth[0]


@pytest.mark.parametrize(("method", "dtype"), [("kto", "float32"), ("dpo", "bfloat16")])
def test_many_client_rounds_leave_the_models_hooks_unchanged(
    method: str, dtype: str, tiny_model: Path, pairs_file: Path, tmp_path: Path
) -> None:
    spec = RunSpec(
        model=str(tiny_model),
        data=str(pairs_file),
        method=method,
        layout="original",
        max_length=64,
        lora_r=4,
        batch_size=2,
        dtype=dtype,
        holdout=0,
    )
    cell = build_cell(spec, load_registry(entry_points=False))
    clients = partition(cell, for_rounds=False)
    model, tokenizer = load_base(spec.model, spec.dtype)
    peft = attach_lora(model, spec.lora)
    data = {cid: to_dataset(cell.method.records(ex, spec.template)) for cid, ex in clients.items()}
    args = LocalTrainingArgs(str(tmp_path), 1, 2, 1, 1e-3, 64, 0, bf16=dtype == "bfloat16")
    # the first trainer may leave accelerate's mixed-precision wrapper on the PEFT model: it is set once, never nested
    train_client(cell.method, peft, tokenizer, next(iter(data.values())), args)
    before, depth = _wiring(peft), _call_depth(peft, tokenizer)
    for _ in range(3):  # 3 rounds x every client
        for cid in sorted(data):
            train_client(cell.method, peft, tokenizer, data[cid], args)
    assert _wiring(peft) == before, "no hook and no forward wrapper is left behind"
    assert _call_depth(peft, tokenizer) == depth
