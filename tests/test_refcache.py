"""The reference log-prob cache: same training as without it, the base model's values, each row scored once per run."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from fedbench.harness.data import load_pairs
from fedbench.harness.federation import RoundEvent, build_cell, run_federation
from fedbench.harness.interfaces import LocalTrainingArgs
from fedbench.harness.models import attach_lora, fresh_adapter, load_base
from fedbench.harness.refcache import ReferenceCache
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec
from fedbench.harness.training import to_dataset

CELLS = [("kto", "redistributed"), ("dpo", "original")]
# Forwards of the base network per batch: KTO runs the completions and the KL completions, DPO
# chosen and rejected in one batch. Without the cache TRL adds as many for the reference each step;
# with it, the cache adds one per batch that holds unseen rows (KTO's two stacked into one).
FORWARDS = {"kto": 2, "dpo": 1}


def _spec(model: Path, data: Path, method: str, layout: str, **kw) -> RunSpec:
    base = dict(
        model=str(model),
        data=str(data),
        method=method,
        layout=layout,
        rounds=2,
        clients_per_round=2,
        local_steps=2,
        batch_size=2,
        learning_rate=5e-3,
        max_length=64,
        lora_r=4,
        lora_alpha=8,
        dtype="float32",  # the tolerances below are float32's
    )
    return RunSpec(**(base | kw))


def _final(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(run_dir / "adapter" / "adapter_model.safetensors")


@pytest.fixture()
def forwards(tiny_model):
    """Counts forward passes of the tiny model's transformer body (policy, reference and cache scoring alike)."""
    body = load_base(str(tiny_model), "float32")[0].model
    calls = [0]
    handle = body.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    yield calls
    handle.remove()


class Scoring:
    """How many rows, in how many batches, the cache scored with the base model."""

    rows = 0
    batches = 0


@pytest.fixture()
def scoring(monkeypatch) -> Scoring:
    stats = Scoring()
    real = ReferenceCache.score

    def score(self, trainer, batch):  # noqa: ANN001
        values = real(self, trainer, batch)
        stats.rows += len(values)
        stats.batches += 1
        return values

    monkeypatch.setattr(ReferenceCache, "score", score)
    return stats


def _cached(run_dir: Path) -> dict[str, list[float]]:
    files = list((run_dir / "refcache").glob("*.json"))
    assert len(files) == 1, files
    return json.loads(files[0].read_text())["rows"]


@pytest.mark.parametrize(("method", "layout"), CELLS)
def test_cached_reference_trains_the_same_adapter(tiny_model, pairs_file, tmp_path, method, layout, forwards, scoring) -> None:
    """Tolerance rtol 1e-5 / atol 1e-6. A row first met in a batch of unseen rows gets the tensors TRL
    would have scored (KTO's completions and KL completions stacked into one forward); one met again
    beside other rows was scored in a batch padded differently, which may change a float32 log-prob's last
    bits (~1e-7 relative). Over 4 Adam steps that stays orders of magnitude below one update (lr 5e-3);
    on CPU the runs agree bit for bit today, the tolerance spares kernel changes."""
    registry = load_registry(entry_points=False)
    steps = 2 * 2 * 2  # rounds x clients per round x local steps
    uncached = run_federation(
        build_cell(_spec(tiny_model, pairs_file, method, layout, ref_cache=False), registry), tmp_path / "off"
    )
    assert forwards[0] == 2 * FORWARDS[method] * steps, "without the cache TRL scores the reference every step"
    assert not (uncached.run_dir / "refcache").exists()

    forwards[0] = 0
    cached = run_federation(build_cell(_spec(tiny_model, pairs_file, method, layout), registry), tmp_path / "on")
    assert 0 < scoring.rows == len(_cached(cached.run_dir)), "each distinct row is scored once"
    assert forwards[0] == FORWARDS[method] * steps + scoring.batches, "the reference runs only for unseen rows"

    a, b = _final(cached.run_dir), _final(uncached.run_dir)
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("method", "layout"), CELLS)
def test_a_rerun_reads_the_file_and_scores_nothing(tiny_model, pairs_file, tmp_path, method, layout, forwards, scoring) -> None:
    registry = load_registry(entry_points=False)
    spec = _spec(tiny_model, pairs_file, method, layout)
    first = run_federation(build_cell(spec, registry), tmp_path)
    (cache_file,) = (first.run_dir / "refcache").glob("*.json")
    saved = json.loads(cache_file.read_text())
    assert saved["identity"]["model"] == str(tiny_model) and len(saved["rows"]) == scoring.rows > 0
    written = cache_file.stat().st_mtime_ns

    scoring.rows = scoring.batches = forwards[0] = 0
    again = run_federation(build_cell(spec, registry), tmp_path, force=True)
    assert scoring.rows == 0, "everything came from the file"
    assert forwards[0] == FORWARDS[method] * 2 * 2 * 2, "and TRL ran no reference forward"
    assert cache_file.stat().st_mtime_ns == written, "nothing new, nothing rewritten"
    a, b = _final(first.run_dir), _final(again.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_scores_only_new_rows_and_ends_bit_for_bit(tiny_model, pairs_file, tmp_path, scoring) -> None:
    """A resumed run (some values from the file) matches a straight one bit for bit, and rescores nothing."""
    registry = load_registry(entry_points=False)
    spec = _spec(tiny_model, pairs_file, "kto", "redistributed", rounds=3)
    straight = run_federation(build_cell(spec, registry), tmp_path / "a")

    def crash(event: RoundEvent) -> None:
        if event.client is None and event.round == 1:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError, match="simulated crash"):
        run_federation(build_cell(spec, registry), tmp_path / "b", on_event=crash)
    after_round_1 = _cached(tmp_path / "b" / straight.run_dir.name)
    scoring.rows = 0
    resumed = run_federation(build_cell(spec, registry), tmp_path / "b")
    final = _cached(resumed.run_dir)
    assert 0 < len(after_round_1) < len(final) and scoring.rows == len(final) - len(after_round_1)
    assert final == _cached(straight.run_dir), "same rows, same values"
    a, b = _final(straight.run_dir), _final(resumed.run_dir)
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(("method", "layout"), CELLS)
def test_cached_values_are_the_base_model_not_the_adapter(tiny_model, pairs_file, tmp_path, method, layout) -> None:
    """Scored with a far-from-zero adapter loaded: the values must be the base model's all the same."""
    registry = load_registry(entry_points=False)
    spec = _spec(tiny_model, pairs_file, method, layout)
    cell = build_cell(spec, registry)
    model, tokenizer = load_base(spec.model)
    peft_model = attach_lora(model, spec.lora)
    fresh_adapter(peft_model, 0)
    with torch.no_grad():
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
    examples = cell.method.examples(load_pairs(spec.data))[:4]
    args = LocalTrainingArgs(
        output_dir=str(tmp_path), steps=1, batch_size=2, grad_accum=1, learning_rate=1e-3, max_length=64, seed=0
    )
    trainer = cell.method.build_trainer(peft_model, tokenizer, to_dataset(cell.method.records(examples, spec.template)), args, [])
    peft_model.delete_adapter("ref")
    peft_model.set_adapter("default")
    cache = ReferenceCache(None, cell.method.ref_columns, {})
    assert cache.attach(trainer)
    rows = [trainer.train_dataset[i] for i in range(2)]
    batch = trainer.data_collator(rows)
    assert all(torch.isnan(batch[c]).all() for c in cell.method.ref_columns), "unseen rows are scored when trained on"
    trainer.compute_loss(trainer.model, batch)

    def logps(input_ids: torch.Tensor, completion_mask: torch.Tensor) -> torch.Tensor:
        logits = peft_model(input_ids=input_ids).logits[:, :-1].float()
        tokens = input_ids[:, 1:]
        per_token = torch.log_softmax(logits, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
        return (per_token * completion_mask[:, 1:]).sum(-1)

    with torch.no_grad():
        sequences = {}
        for name, field in (
            ("", "completion_ids"),
            ("chosen_", "chosen_ids"),
            ("rejected_", "rejected_ids"),
            ("KL_", "KL_completion_ids"),
        ):
            if field in rows[0]:
                ids = [torch.tensor(r["prompt_ids"] + r[field]) for r in rows]
                mask = [torch.tensor([0] * len(r["prompt_ids"]) + [1] * len(r[field])) for r in rows]
                sequences[name] = [(i.unsqueeze(0), m.unsqueeze(0)) for i, m in zip(ids, mask)]
        with peft_model.disable_adapter():
            base = {k: torch.cat([logps(i, m) for i, m in v]) for k, v in sequences.items()}
        tuned = {k: torch.cat([logps(i, m) for i, m in v]) for k, v in sequences.items()}
    expected = {"ref_logps": "", "ref_KL_logps": "KL_", "ref_chosen_logps": "chosen_", "ref_rejected_logps": "rejected_"}
    for column in cell.method.ref_columns:
        torch.testing.assert_close(batch[column], base[expected[column]], rtol=1e-5, atol=1e-4)
        assert not torch.allclose(batch[column], tuned[expected[column]], atol=1e-2), "the adapter must not leak in"
    assert cache.computed == 2 and len(cache) == 2
    again = trainer.data_collator(rows)
    assert all(torch.equal(again[c], batch[c]) for c in cell.method.ref_columns), "a row met again is read, not rescored"
    assert cache.computed == 2


def test_a_changed_model_or_method_ignores_the_file(tmp_path) -> None:
    path = tmp_path / "refcache" / "x.json"
    cache = ReferenceCache(path, ("ref_logps",), {"model": "a"})
    cache.rows["k"] = (1.5,)
    cache.save()
    assert len(ReferenceCache(path, ("ref_logps",), {"model": "a"})) == 1
    assert len(ReferenceCache(path, ("ref_logps",), {"model": "b"})) == 0


def test_the_setting_turns_it_off_and_keeps_default_hashes() -> None:
    on, off = RunSpec(), RunSpec(ref_cache=False)
    assert on.hash != off.hash, "with and without the cache are different run directories"
    values = on.to_dict()
    del values["ref_cache"], values["gradient_checkpointing"]  # neither changes the experiment
    del values["privacy"], values["codec"], values["codec_params"]  # added later: at their defaults, left out
    del values["attack"], values["attack_params"], values["clients"]
    assert on.hash == hashlib.sha256(json.dumps(values, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:12]
    # the hashes (run directories) of specs written before privacy and codecs existed, computed by that version
    assert RunSpec(dtype="float32").hash == "70512f754969"
    assert RunSpec(dtype="float32", aggregator="scaffold", rounds=7).hash == "6c7cf6e92014"
