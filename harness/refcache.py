"""Reference log-probabilities of the frozen base model, scored once per run instead of every step.

In DPO and KTO the reference is the base model with the adapter disabled, the same in every
round, yet TRL scores it again at every step (one extra forward per batch, two for KTO's KL
term). TRL can instead read precomputed values from the batch (``ref_chosen_logps`` /
``ref_rejected_logps`` for DPO, ``ref_logps`` / ``ref_KL_logps`` for KTO) when its trainer's
``precompute_ref_logps`` is on. This module supplies them:

* lazily, the first time a row is trained on: a client's data is often much larger than what
  a few local steps touch, so scoring whole data sets up front would cost more than it saves
  in short runs. A batch's unseen rows are scored together, as TRL would have scored them in
  that step (the very same tensors when all are unseen); the value is then fixed for the run;
* keyed by a digest of the exact token ids scored (prompt, completion(s), KTO's KL completion)
  and the truncation length, which identifies the example *and* its KL partner, and notices
  a changed data file, template or tokenizer that example ids alone would not;
* persisted per run under ``<run dir>/refcache/`` (one JSON file per model), written atomically
  at the end of each round just before its checkpoint, so a resumed or forced rerun scores
  nothing it already scored. Resume stays bit-for-bit: a crash inside a round leaves the file
  of the round before, so the rerun meets the same unseen rows in the same batches; a crash
  between file and checkpoint leaves values the uninterrupted run computed identically.

TRL's own ``precompute_ref_log_probs=True`` is not used: it scores with whatever adapter is
live when the trainer is built (a "ref" copy of the global adapter, not the base), re-scores the
whole data set at every trainer construction, and hashes every model weight each time.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch

from fedbench.harness.checkpoint import atomic_write_json
from fedbench.harness.kernels import log_probs_only

if TYPE_CHECKING:
    from peft import PeftModel
    from transformers import Trainer

    from fedbench.harness.interfaces import Method
    from fedbench.harness.spec import RunSpec

FORMAT = 1
CACHE_DIR = "refcache"


def row_key(row: dict[str, Any], max_length: int | None) -> str:
    """Digest of what the reference scores for a trainer row: every ``*_ids`` field, plus the truncation length."""
    ids = {k: list(v) for k, v in sorted(row.items()) if k.endswith("_ids")}
    blob = json.dumps([max_length, ids], separators=(",", ":"))
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


class ReferenceCache:
    """A run's reference log-probs by row key; ``columns`` are the names the method's TRL trainer reads."""

    def __init__(self, path: Path | None, columns: Sequence[str], identity: dict[str, Any]) -> None:
        self.path = path
        self.columns = tuple(columns)
        self.identity = identity
        self.rows: dict[str, tuple[float, ...]] = {}
        self.computed = 0
        """Rows scored by this process (the rest came from the file): what a resumed run saves."""
        self.seconds = 0.0
        """Wall time spent scoring them."""
        if path is not None and path.is_file():
            self._load(path)
        self._saved = len(self.rows)  # rows are only ever added, so a count tells what is new

    @classmethod
    def for_run(cls, run_path: Path | None, method: Method, spec: RunSpec) -> ReferenceCache | None:
        """The cache of a run directory (in memory only when ``run_path`` is None, as on a Flower client),
        or None when the spec turns it off or the method has no reference."""
        columns = tuple(method.ref_columns)
        if not spec.ref_cache or not columns:
            return None
        identity = {"format": FORMAT, "model": spec.model, "dtype": spec.dtype, "method": method.name, "columns": list(columns)}
        tag = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
        path = None if run_path is None else Path(run_path) / CACHE_DIR / f"{method.name}-{tag}.json"
        return cls(path, columns, identity)

    def _load(self, path: Path) -> None:
        try:
            saved = json.loads(path.read_text())
        except (OSError, ValueError) as err:  # written atomically, so only a foreign edit gets here
            warnings.warn(f"ignoring unreadable reference cache {path} ({err}); it is rebuilt", stacklevel=2)
            return
        if saved.get("identity") != self.identity:
            return  # another model or method: score afresh, the file is replaced on save
        self.rows = {k: tuple(v) for k, v in saved["rows"].items()}

    def __len__(self) -> int:
        return len(self.rows)

    def save(self) -> None:
        """Write the file if rows were added since the last save (atomic: a crash keeps the previous one)."""
        if self.path is None or len(self.rows) == self._saved:
            return
        atomic_write_json(self.path, {"identity": self.identity, "rows": {k: list(v) for k, v in self.rows.items()}})
        self._saved = len(self.rows)

    def attach(self, trainer: Trainer) -> bool:
        """Make ``trainer`` read the reference from this cache instead of running the base model each step.

        Call after the trainer is built and TRL's "ref" adapter deleted, before ``train()``. Returns
        False (and leaves the trainer as it was) for a trainer without TRL's reference hooks.

        The collator adds the cached values of the batch's rows (NaN for unseen ones, noted in the
        batch); ``compute_loss`` scores the unseen rows just before TRL reads the columns. Scoring
        waits until then because the data loader prepares one batch ahead, a batch that the last
        step never trains on.
        """
        if not (hasattr(trainer, "compute_ref_log_probs") and hasattr(trainer, "precompute_ref_logps")):
            warnings.warn(f"{type(trainer).__name__} has no precomputed-reference support; not caching", stacklevel=2)
            return False
        if trainer.args.dataloader_num_workers:  # the collator must run here, where the cache lives
            warnings.warn("data loader workers are on; not caching reference log-probs", stacklevel=2)
            return False
        if "ref" in getattr(trainer.model, "peft_config", {}):
            raise RuntimeError("the reference must be the base model: delete TRL's 'ref' adapter before attaching")
        collate, compute_loss = trainer.data_collator, trainer.compute_loss
        max_length = getattr(trainer.args, "max_length", None)
        unknown = (math.nan,) * len(self.columns)

        def collate_with_reference(examples: list[dict[str, Any]]) -> dict[str, Any]:
            keys = [row_key(example, max_length) for example in examples]
            batch = collate([{**ex, **dict(zip(self.columns, self.rows.get(k, unknown)))} for k, ex in zip(keys, examples)])
            unseen = {i: ex for i, (k, ex) in enumerate(zip(keys, examples)) if k not in self.rows}
            if unseen:
                batch[PENDING] = _Pending(keys, unseen)
            return batch

        def compute_loss_with_reference(model: Any, inputs: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
            pending = inputs.pop(PENDING, None)
            if pending is not None:
                self._fill(trainer, collate, inputs, pending)
            return compute_loss(model, inputs, *args, **kwargs)

        trainer.data_collator = collate_with_reference
        trainer.compute_loss = compute_loss_with_reference  # type: ignore[method-assign]  # wraps the trainer's own
        trainer.precompute_ref_logps = True  # TRL's _compute_loss then reads the columns and skips the reference forward
        return True

    def _fill(
        self,
        trainer: Trainer,
        collate: Callable[[list[dict[str, Any]]], dict[str, Any]],
        batch: dict[str, Any],
        pending: _Pending,
    ) -> None:
        """Score the batch's rows still unseen (another batch may have met some since collation) and fill them in."""
        todo: dict[str, int] = {}
        for i in pending.unseen:
            if pending.keys[i] not in self.rows:
                todo.setdefault(pending.keys[i], i)
        if todo:
            # all rows unseen: score the batch itself, the very tensors TRL would have scored
            source = batch if len(todo) == len(pending.keys) else collate([pending.unseen[i] for i in todo.values()])
            self.rows.update(zip(todo, self.score(trainer, source)))
        for i in pending.unseen:
            for column, value in zip(self.columns, self.rows[pending.keys[i]]):
                batch[column][i] = value

    def score(self, trainer: Trainer, batch: dict[str, Any]) -> list[tuple[float, ...]]:
        """The base model's log-probs for a collated batch, via TRL's own ``compute_ref_log_probs``."""
        started = time.perf_counter()
        model = cast("PeftModel", trainer.model)  # the harness trains a PEFT-wrapped model (models.attach_lora)
        device = trainer.accelerator.device
        batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        was_training = model.training
        model.train(False)
        try:
            with torch.no_grad(), base_model_only(model), log_probs_only():
                out = _reference_log_probs(trainer, model, batch)
        finally:
            model.train(was_training)
        if len(out) != len(self.columns):
            raise RuntimeError(f"reference scoring gave {len(out)} values per row for columns {self.columns}")
        values = list(zip(*(t.detach().float().cpu().tolist() for t in out)))
        self.computed += len(values)
        self.seconds += time.perf_counter() - started
        return values


def _reference_log_probs(trainer: Any, model: PeftModel, batch: dict[str, Any]) -> list[torch.Tensor]:
    """One tensor per reference column, from TRL's ``compute_ref_log_probs``.

    KTO's trainer scores the completions and the KL completions in two forwards of the batch's size;
    here they are stacked into one forward of twice the rows (right-padded to a common length, which
    a causal model does not see). With :func:`base_model_only`, a demo client's cold scoring took
    1.63-1.68 s instead of 1.76-1.88 s for 5 KTO steps (interleaved in one process).
    """
    if not (getattr(trainer, "calculate_KL", False) and "KL_input_ids" in batch):
        return [t for t in trainer.compute_ref_log_probs(model, batch) if t is not None]
    stacked = {
        key: _stack_right_padded(batch[key], batch["KL_" + key], 0 if key != "input_ids" else _pad_id(trainer))
        for key in ("input_ids", "attention_mask", "completion_mask")
    }
    trainer.calculate_KL = False
    try:
        logps, _ = trainer.compute_ref_log_probs(model, stacked)
    finally:
        trainer.calculate_KL = True
    return list(logps.chunk(2))


def _pad_id(trainer: Any) -> int:
    tokenizer = trainer.processing_class
    return int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)


def _stack_right_padded(first: torch.Tensor, second: torch.Tensor, pad: int) -> torch.Tensor:
    """Rows of ``first`` then ``second`` ([batch, length] each), right-padded with ``pad`` to the longer length."""
    width = max(first.shape[1], second.shape[1])
    return torch.cat([torch.nn.functional.pad(t, (0, width - t.shape[1]), value=pad) for t in (first, second)])


@contextmanager
def base_model_only(model: PeftModel) -> Iterator[None]:
    """The LoRA layers switched off, as PEFT's ``disable_adapter()`` does, without its per-call model survey.

    PEFT's context first builds a status of every adapter layer, walking the whole module tree, and
    TRL's reference scoring enters it once more inside, twice per scored batch. Here each adapter
    layer is switched off and back directly, and the model's own ``disable_adapter`` answers with a
    no-op inside, so TRL's call finds the base model.
    """
    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in model.modules() if isinstance(m, BaseTunerLayer)]
    disabled = [layer.disable_adapters for layer in layers]
    for layer in layers:
        layer.enable_adapters(False)
    model.disable_adapter = nullcontext  # type: ignore[method-assign,assignment]  # TRL calls it inside
    try:
        yield
    finally:
        del model.disable_adapter
        for layer, was in zip(layers, disabled):
            if not was:
                layer.enable_adapters(True)


PENDING = "fedbench_unseen_reference_rows"


@dataclass(frozen=True)
class _Pending:
    """A batch's row keys, and the rows (by position) whose reference values were unknown when it was collated."""

    keys: list[str]
    unseen: dict[int, dict[str, Any]]
