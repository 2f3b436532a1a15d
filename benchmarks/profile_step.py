"""Where one client's local training spends its time: ``.venv/bin/python benchmarks/profile_step.py``.

Not a test: it prints a table (and ``--json`` writes the figures). One client of the demo data
trains ``--steps`` optimizer steps through fedbench's own ``train_client`` under two settings:

* ``study``: the study's loop shape on the current stack: float32, gradient checkpointing on,
  the reference scored by the base model at every step (no reference cache), TRL's log-prob
  head as it comes (every position projected onto the vocabulary);
* ``fedbench``: fedbench's defaults on this machine (``dtype = "auto"``, gradient checkpointing
  ``auto``, reference cache on, cold: the client's first visit).

Each phase's *exclusive* wall time is measured by wrapping the calls that make it up (nested
calls are charged to the inner phase): building the trainer (TRL's dataset preparation and
tokenisation included), data collation, forward passes with gradients (the policy), forward
passes without gradients (KTO's KL estimate and the reference), the loss math around them,
backward (gradient-checkpointing recomputation included), the optimizer step, and the rest of
the trainer's loop. ``torch.profiler`` gives per-operator detail but cannot tell a policy
forward from a reference forward; these wrappers can.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

PHASES = {
    "build": "trainer construction + dataset preparation",
    "collate": "data collation",
    "forward_grad": "policy forward (with gradients)",
    "forward_nograd": "no-grad forwards (KL estimate, reference)",
    "loss": "loss and log-prob math",
    "backward": "backward (incl. checkpoint recomputation)",
    "optimizer": "optimizer step + zero_grad",
    "other": "trainer loop, callbacks, rest",
}
SETTINGS = {
    "study": {"dtype": "float32", "gradient_checkpointing": "on", "ref_cache": False},
    "fedbench": {},
}


class Split:
    """Exclusive wall time per phase: entering a phase pauses the one it interrupts."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.stack: list[list[Any]] = []

    def push(self, name: str) -> None:
        now = time.perf_counter()
        if self.stack:
            self.totals[self.stack[-1][0]] += now - self.stack[-1][1]
        self.stack.append([name, now])

    def pop(self) -> None:
        now = time.perf_counter()
        name, since = self.stack.pop()
        self.totals[name] += now - since
        if self.stack:
            self.stack[-1][1] = now

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        self.push(name)
        try:
            yield
        finally:
            self.pop()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return fn(*args, **kwargs)

        return timed


@contextmanager
def patched(owner: Any, attribute: str, make: Callable[[Callable[..., Any]], Callable[..., Any]]) -> Iterator[None]:
    original = getattr(owner, attribute)
    setattr(owner, attribute, make(original))
    try:
        yield
    finally:
        setattr(owner, attribute, original)


class Flops:
    """Model FLOPs of the top-level forwards of one local training, counted from their shapes (useful work only).

    Per forward of a Llama-style model over rows of n_i real tokens: 2 x (body parameters) x sum(n_i) for the
    projections and MLPs, plus 4 x layers x width x sum(n_i^2) for attention scores and values, plus 2 x width x
    vocabulary for each labelled position (useful work: fedbench projects only those positions, while the ``study``
    setting projects every position and is credited the same; a forward without labels is counted without its
    head). Prefix sharing computes the prefixes rows share once, so a step executes fewer FLOPs than these counts,
    which credit every row whole: the rate of useful work. A forward with gradients costs again as much in the
    backward for the activations' gradients (frozen weights need no weight gradients; LoRA's are negligible) and
    twice its attention part.
    """

    def __init__(self, config: Any) -> None:
        d, layers = config.hidden_size, config.num_hidden_layers
        kv = d * config.num_key_value_heads // config.num_attention_heads
        self.body = layers * (2 * d * d + 2 * d * kv + 3 * d * config.intermediate_size)
        self.attention = 4 * layers * d
        self.head = 2 * d * config.vocab_size
        self.totals: dict[str, float] = defaultdict(float)

    def count(self, grad: bool, mask: Any, labels: Any = None) -> None:
        lengths = mask.sum(dim=1).double()
        scored = 0.0 if labels is None else float((labels[:, 1:] != -100).sum())  # TRL shifts: position t scores t+1
        matmul = 2.0 * self.body * float(lengths.sum()) + self.head * scored
        attention = self.attention * float((lengths**2).sum())
        phase = "forward_grad" if grad else "forward_nograd"
        self.totals[phase] += matmul + attention
        self.totals[f"{phase}_tokens"] += float(lengths.sum())
        if grad:
            self.totals["backward"] += matmul + 2 * attention

    @property
    def total(self) -> float:
        return self.totals["forward_grad"] + self.totals["forward_nograd"] + self.totals["backward"]


def matmul_rate(width: int, dtype: str, rows: int = 2048, reps: int = 20, burst: int = 10) -> float:
    """FLOP/s of (rows x width) @ (width x width) in ``dtype`` on this machine, the best of ``reps`` timings of ``burst``
    products back to back. (One product takes about a millisecond; timed alone, the best of 20 swung between 1.1 and
    2.4 TFLOP/s within one run.) The rate is not monotonic in ``rows``: in bfloat16 at width 576 this CPU gave
    1.67 TFLOP/s at 256 rows, 1.09 at 576 (the square product), 1.20 at 1024 and 2.35 at 2048."""
    import torch

    kind = getattr(torch, dtype)
    x, w = torch.randn(rows, width, dtype=kind), torch.randn(width, width, dtype=kind)
    best = float("inf")
    with torch.no_grad():
        for _ in range(reps):
            started = time.perf_counter()
            for _ in range(burst):
                x @ w
            best = min(best, (time.perf_counter() - started) / burst)
    return 2.0 * rows * width * width / best


def instrument(split: Split, model: Any, flops: Flops | None = None) -> ExitStack:
    """Wrap the calls of each phase for the duration of the returned context."""
    import torch
    from accelerate import Accelerator
    from accelerate.optimizer import AcceleratedOptimizer
    from transformers import Trainer
    from trl import DPOTrainer, KTOTrainer

    stack = ExitStack()
    for cls in (KTOTrainer, DPOTrainer):
        stack.enter_context(patched(cls, "__init__", lambda f: split.wrap("build", f)))
        stack.enter_context(patched(cls, "compute_loss", lambda f: split.wrap("loss", f)))
    stack.enter_context(patched(Accelerator, "backward", lambda f: split.wrap("backward", f)))
    stack.enter_context(patched(AcceleratedOptimizer, "step", lambda f: split.wrap("optimizer", f)))
    stack.enter_context(patched(AcceleratedOptimizer, "zero_grad", lambda f: split.wrap("optimizer", f)))

    def dataloader(original: Callable[..., Any]) -> Callable[..., Any]:
        def make(self: Any, *args: Any, **kwargs: Any) -> Any:
            if not getattr(self.data_collator, "_profiled", False):
                self.data_collator = split.wrap("collate", self.data_collator)
                self.data_collator._profiled = True
            return original(self, *args, **kwargs)

        return make

    stack.enter_context(patched(Trainer, "get_train_dataloader", dataloader))

    def enter(_module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        split.push("forward_grad" if torch.is_grad_enabled() else "forward_nograd")
        ids = kwargs.get("input_ids", args[0] if args else None)
        if flops is not None and ids is not None:
            mask = kwargs.get("attention_mask")
            flops.count(torch.is_grad_enabled(), mask if mask is not None else torch.ones_like(ids), kwargs.get("labels"))

    pre = model.register_forward_pre_hook(enter, with_kwargs=True)
    post = model.register_forward_hook(lambda *_: split.pop())
    stack.callback(pre.remove)
    stack.callback(post.remove)
    return stack


def profile(method_name: str, setting: str, steps: int, batch_size: int, client: str) -> dict[str, Any]:
    """One client's ``steps`` local steps under ``setting``, split into phases (seconds)."""

    from fedbench.harness import training
    from fedbench.harness.federation import build_cell, checkpointing_for, local_args, partition
    from fedbench.harness.models import attach_lora, fresh_adapter, load_base
    from fedbench.harness.refcache import ReferenceCache
    from fedbench.harness.registry import load_registry
    from fedbench.harness.spec import RunSpec
    from fedbench.harness.training import to_dataset, train_client

    layout = "redistributed" if method_name == "kto" else "original"
    spec = RunSpec(data="demo", method=method_name, layout=layout, local_steps=steps, batch_size=batch_size, **SETTINGS[setting])
    cell = build_cell(spec, load_registry(entry_points=False))
    dataset = to_dataset(cell.method.records(partition(cell)[client], spec.template))
    model, tokenizer = load_base(spec.model, spec.dtype)
    peft_model = attach_lora(model, spec.lora)
    fresh_adapter(peft_model, spec.seed)
    with tempfile.TemporaryDirectory(prefix="fedbench-profile-") as tmp:
        args = local_args(spec, 0, client, tmp, checkpointing_for(cell, model).value, spec.steps_for(len(dataset), 1))
        reference = ReferenceCache.for_run(None, cell.method, spec)
        split = Split()
        flops = Flops(model.config)
        with instrument(split, peft_model, flops) as stack:
            if setting == "study":  # TRL's head as it comes, without fedbench's gather of the labelled positions
                stack.enter_context(patched(training, "scored_positions_only", lambda _: nullcontext))
            started = time.perf_counter()
            with split.phase("other"):
                result = train_client(cell.method, peft_model, tokenizer, dataset, args, reference=reference)
            total = time.perf_counter() - started
    return {
        "method": method_name,
        "setting": setting,
        "dtype": spec.dtype,
        "gradient_checkpointing": args.gradient_checkpointing,
        "ref_cache": spec.ref_cache,
        "steps": result.steps,
        "batch_size": batch_size,
        "seconds": total,
        "phases": {name: split.totals.get(name, 0.0) for name in PHASES},
        "flops": dict(flops.totals) | {"total": flops.total},
        "width": model.config.hidden_size,
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = "| phase | " + " | ".join(f"{r['method']} {r['setting']}" for r in rows) + " |"
    lines = [head, "|---" * (len(rows) + 1) + "|"]
    for name, label in PHASES.items():
        cells = [f"{r['phases'][name]:.2f} s ({r['phases'][name] / r['seconds']:.0%})" for r in rows]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines.append("| **total** | " + " | ".join(f"**{r['seconds']:.2f} s**" for r in rows) + " |")
    lines.append(
        "| settings | "
        + " | ".join(
            f"{r['dtype']}, checkpointing {'on' if r['gradient_checkpointing'] else 'off'}, "
            f"cache {'on' if r['ref_cache'] else 'off'}"
            for r in rows
        )
        + " |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default="kto,dpo")
    parser.add_argument("--settings", default="study,fedbench")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--client", default="user_04", help="a demo-data client with more rows than steps x batch")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    opts = parser.parse_args(argv)

    import logging
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    rows = []
    for method_name in opts.methods.split(","):
        # warm-up: first-call costs (imports, allocator, kernels) belong to neither setting
        profile(method_name, "fedbench", 1, opts.batch_size, opts.client)
        for setting in opts.settings.split(","):
            rows.append(profile(method_name, setting, opts.steps, opts.batch_size, opts.client))
            print(f"{method_name} {setting}: {rows[-1]['seconds']:.1f} s", file=sys.stderr)
    print(table(rows))
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
