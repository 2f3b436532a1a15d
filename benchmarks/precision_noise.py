"""How far a trainer's sequence log-probabilities sit from float32's, padded and with prefix sharing.

    .venv/bin/python benchmarks/precision_noise.py [--method kto|dpo] [--batches 6]

Scores the first batches of demo client user_04 with TRL's own reference scoring (the live adapter,
fresh, so policy and reference coincide) in float32 and in bfloat16, each with padded batches and
with prefix sharing (``harness/prefix.py``), and prints the RMS and the largest difference from the
float32 padded values in nats per sequence. Prefix sharing changes the float32 values by rounding
only; in bfloat16 both batch layouts carry bfloat16's own error, which moves a DPO or KTO log-ratio
as much as a changed batch shape does.
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from typing import Any

import torch

from fedbench.harness.federation import build_cell, checkpointing_for, local_args, partition
from fedbench.harness.models import attach_lora, fresh_adapter, load_base
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec
from fedbench.harness.training import to_dataset, training_paths


def sequence_log_probs(method: str, dtype: str, batches: int, client: str = "user_04") -> dict[bool, torch.Tensor]:
    """Each row's summed completion log-prob (and KTO's KL rows'), padded (False) and prefix-shared (True)."""
    spec = RunSpec(data="demo", method=method, layout="redistributed" if method == "kto" else "original", dtype=dtype)
    cell = build_cell(spec, load_registry(entry_points=False))
    dataset = to_dataset(cell.method.records(partition(cell)[client], spec.template))
    model, tokenizer = load_base(spec.model, dtype)
    peft = attach_lora(model, spec.lora)
    fresh_adapter(peft, spec.seed)
    values: dict[bool, torch.Tensor] = {}
    with tempfile.TemporaryDirectory() as tmp:
        args = local_args(spec, 0, client, tmp, checkpointing_for(cell, model).value, 5)
        trainer: Any = cell.method.build_trainer(peft, tokenizer, dataset, args, [])
        torch.manual_seed(0)
        loaded = list(itertools.islice(iter(trainer.get_train_dataloader()), batches))
        peft.train(False)
        for shared in (False, True):
            with training_paths(peft, prefix_sharing=shared), torch.no_grad():
                rows = [t for batch in loaded for t in trainer.compute_ref_log_probs(peft, batch) if t is not None]
            values[shared] = torch.cat(rows).float()
    return values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=("kto", "dpo"), default="kto")
    parser.add_argument("--batches", type=int, default=6)
    opts = parser.parse_args()
    scored = {dtype: sequence_log_probs(opts.method, dtype, opts.batches) for dtype in ("float32", "bfloat16")}
    truth = scored["float32"][False]
    print(f"{opts.method}: sequence log-probs of {len(truth)} rows against float32 padded (nats per sequence)")
    for dtype, by_layout in scored.items():
        for shared, value in by_layout.items():
            error = value - truth
            layout = "prefix sharing" if shared else "padded"
            print(f"  {dtype:9s} {layout:15s} RMS {error.pow(2).mean().sqrt():.4f}  max {error.abs().max():.4f}")


if __name__ == "__main__":
    main()
