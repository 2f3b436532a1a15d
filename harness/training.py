"""One client's local training: any method's trainer, with the aggregator's client half attached.

The harness owns this step, not the method, so every method x aggregator pair works the same
way: the method builds a TRL trainer, the harness adds a callback that lets the aggregator's
:class:`ClientHook` adjust gradients before each optimizer step.
"""

from __future__ import annotations

import gc
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback

from fedbench.harness.hardware import release_freed_memory
from fedbench.harness.interfaces import ClientHook, LocalTrainingArgs, Method
from fedbench.harness.kernels import eager_attention_on_cpu, log_probs_only_in, one_pass_log_probs_on_cpu
from fedbench.harness.models import adapter_parameters
from fedbench.harness.prefix import shared_prefixes_once

if TYPE_CHECKING:
    import datasets
    from peft import PeftModel
    from transformers import PreTrainedTokenizerBase

    from fedbench.harness.refcache import ReferenceCache


def trainer_settings(args: LocalTrainingArgs) -> dict[str, Any]:
    """TRL config fields every method shares: a fixed number of steps at a constant rate, no saving, no logging sinks.

    Precision and gradient checkpointing are always passed, never left to TRL's defaults (bf16 autocast
    and checkpointing on), so what trains is what the run spec and result.json say.
    """
    return dict(
        output_dir=args.output_dir,
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        gradient_accumulation_steps=args.grad_accum,
        learning_rate=args.learning_rate,
        lr_scheduler_type="constant",
        warmup_steps=0,
        max_length=args.max_length,
        logging_steps=1,
        save_strategy="no",
        report_to=[],
        disable_tqdm=True,
        seed=args.seed,
        data_seed=args.seed,
        bf16=args.bf16,
        gradient_checkpointing=args.gradient_checkpointing,
        use_cpu=not torch.cuda.is_available(),
        dataloader_num_workers=0,
    )


class _Harness(TrainerCallback):
    """Bridges the trainer's steps to the client hook and to progress reporting."""

    def __init__(self, model: PeftModel, hook: ClientHook | None, on_step: Callable[[float | None], None] | None) -> None:
        self.params = adapter_parameters(model)
        self.hook = hook
        self.on_step = on_step
        self.losses: list[float] = []

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.hook is not None:
            self.hook.on_gradients(self.params)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if logs and "loss" in logs:
            self.losses.append(float(logs["loss"]))
            if self.on_step:
                self.on_step(float(logs["loss"]))


@dataclass(frozen=True)
class LocalResult:
    steps: int
    loss: float


def train_client(
    method: Method,
    model: PeftModel,
    tokenizer: PreTrainedTokenizerBase,
    dataset: datasets.Dataset,
    args: LocalTrainingArgs,
    hook: ClientHook | None = None,
    on_step: Callable[[float | None], None] | None = None,
    reference: ReferenceCache | None = None,
) -> LocalResult:
    """Train the live adapter in place on one client's data for ``args.steps`` optimizer steps.

    With ``reference``, the trainer reads the base model's log-probs from that run-wide cache
    instead of scoring the base model again at every step.
    """
    bridge = _Harness(model, hook, on_step)
    with as_found(model), training_paths(model):
        trainer = method.build_trainer(model, tokenizer, dataset, args, [bridge])
        trainer.remove_callback(PrinterCallback)  # fedbench reports progress itself
        # TRL copies a PEFT model's current adapter into a "ref" adapter to serve as the reference;
        # fedbench's reference is the frozen base model (adapter disabled), the same in every round.
        if "ref" in getattr(model, "peft_config", {}):
            model.delete_adapter("ref")
            model.set_adapter("default")
        if reference is not None:
            reference.attach(trainer)
        for name in LOG_PROBS_ONLY_PASSES:
            if hasattr(trainer, name):
                setattr(trainer, name, log_probs_only_in(getattr(trainer, name)))
        with collections_skip_what_exists():
            trainer.train()
    model.train(False)
    release_freed_memory()
    loss = sum(bridge.losses) / len(bridge.losses) if bridge.losses else math.nan
    return LocalResult(steps=trainer.state.global_step, loss=loss)


LOG_PROBS_ONLY_PASSES = ("_compute_kl_logps",)
"""TRL trainer methods whose model passes are read for their log-probs alone (KTO's KL estimate): the vocabulary head
skips its metric extras there (:func:`~fedbench.harness.kernels.log_probs_only`)."""


@contextmanager
def training_paths(model: PeftModel, prefix_sharing: bool = True) -> Iterator[None]:
    """The faster paths to the same maths that every client's training takes (and scoring outside it can take).

    TRL's log-prob head scores labelled positions only, in one pass on a CPU; attention is ``eager``
    on a CPU; and, unless ``prefix_sharing`` is False, each prefix a batch's rows share is computed once.
    """
    with scored_positions_only(), one_pass_log_probs_on_cpu(), eager_attention_on_cpu(model):
        with shared_prefixes_once(model) if prefix_sharing else nullcontext():
            yield


@contextmanager
def collections_skip_what_exists() -> Iterator[None]:
    """Garbage collections inside see only objects made inside: the process's model, data and libraries are skipped.

    accelerate runs a full ``gc.collect()`` as every trainer starts training (``free_memory``), about
    0.26 s per client-round in a process that holds a model, its tokenizer and TRL; the objects it
    walks were there before and stay. Freezing them for the duration (``gc.freeze``) leaves the
    collection only the new objects; unfreezing returns them to the collector afterwards.
    """
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


@contextmanager
def scored_positions_only() -> Iterator[None]:
    """Make TRL's chunked log-prob head score only the positions with a label, on every device.

    TRL 1.16's fused LM head (``trl.trainer.utils``) gathers the labelled positions (the
    completion's tokens) before projecting onto the vocabulary only when Triton runs it; on a
    CPU it projects every position, prompt and padding included, and then zeroes those out. The
    vocabulary-wide float32 work is about 40% of a CPU step on SmolLM2, most of it for positions
    whose result is discarded. Gathering first gives the same values for the labelled positions;
    TRL keeps the full-width path off Triton only to avoid recompiling fixed-shape kernels, which
    eager PyTorch does not have. Without that TRL function, nothing changes.
    """
    from trl.trainer import utils as trl_utils

    original = getattr(trl_utils, "_use_triton", None)
    if original is None:
        yield
        return
    trl_utils._use_triton = lambda device: True  # only chooses the gather; kernels pick their own path
    try:
        yield
    finally:
        trl_utils._use_triton = original


_HOOK_TABLES = ("_forward_hooks", "_forward_pre_hooks", "_forward_hooks_with_kwargs", "_forward_hooks_always_called")


@contextmanager
def as_found(model: torch.nn.Module) -> Iterator[None]:
    """Give the shared model back as the client's trainer found it: forward hooks, and forwards wrapped inside it.

    Every trainer construction registers input-embedding hooks (``enable_input_require_grads``) and
    TRL 1.16 puts its fused LM head around whatever ``forward`` the base model has, one more wrapper
    per trainer. Nothing undoes them, so over a paper-scale cell's 2,000 client-rounds every forward
    pass would run through thousands of hooks, and a plain (generation) forward through thousands of
    wrappers, past Python's recursion limit after about a thousand. Both are removed here. The
    mixed-precision wrapper accelerate puts on ``model`` itself is kept: it is set once, by the first
    trainer, and does not nest. (Removing it too made the first client-round of a bfloat16 process
    train differently from later ones, which breaks bit-for-bit resume.)
    """
    modules = list(model.modules())
    hooks = [{name: set(getattr(m, name, None) or {}) for name in _HOOK_TABLES} for m in modules]
    inner = modules[1:]
    forwards = [m.__dict__.get("forward") for m in inner]
    try:
        yield
    finally:
        for module, before in zip(modules, hooks):
            for name, keys in before.items():
                table: dict[int, Any] = getattr(module, name, None) or {}
                for key in [k for k in table if k not in keys]:
                    del table[key]
        for module, forward in zip(inner, forwards):
            if forward is None:
                module.__dict__.pop("forward", None)
            else:
                module.__dict__["forward"] = forward


def to_dataset(rows: Sequence[dict[str, Any]]) -> datasets.Dataset:
    """Trainer rows as a data set, built once per client per run and reused every round.

    TRL 1.16 still tokenises it again in every round's trainer: its DPO/KTO trainers always re-run
    their dataset preparation (an already tokenised data set is re-tokenised, one with only token
    ids is refused), and that costs well under a second per client-round on the demo.
    """
    import datasets

    return datasets.Dataset.from_list(list(rows))
