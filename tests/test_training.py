"""Training a client leaves no hooks behind on the shared model, so cost stays flat over thousands of client-rounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from fedbench.harness.federation import build_cell, partition
from fedbench.harness.interfaces import LocalTrainingArgs
from fedbench.harness.models import attach_lora, load_base
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec
from fedbench.harness.training import to_dataset, train_client


def _wiring(model) -> list[tuple[str, int, int]]:  # noqa: ANN001 - a PEFT model
    """Per module: how many forward hooks and pre-hooks it has."""
    return [(name, len(m._forward_hooks), len(m._forward_pre_hooks)) for name, m in model.named_modules()]


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
    before = _wiring(peft)
    data = {cid: to_dataset(cell.method.records(ex, spec.template)) for cid, ex in clients.items()}
    args = LocalTrainingArgs(str(tmp_path), 1, 2, 1, 1e-3, 64, 0, bf16=dtype == "bfloat16")
    for _ in range(3):  # 3 rounds x every client
        for cid in sorted(data):
            train_client(cell.method, peft, tokenizer, data[cid], args)
    assert _wiring(peft) == before
