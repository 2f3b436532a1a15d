"""The machine's fast path: ``auto`` precision and gradient checkpointing, what they record, and what they change."""

from __future__ import annotations

import json
import math

import pytest
import torch

from fedbench.harness import hardware
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import build_cell, run_federation
from fedbench.harness.models import load_base
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec, resolve_settings
from fedbench.harness.training import scored_positions_only
from tests.test_federation import tiny_spec


def test_auto_precision_names_what_runs() -> None:
    choice = hardware.auto_dtype()
    assert choice.value in ("bfloat16", "float32") and choice.reason
    assert RunSpec().dtype == choice.value, "a spec never says 'auto': it names the precision that trains"
    assert RunSpec(dtype="float32").dtype == "float32"
    with pytest.raises(FedbenchError, match="float64.*not supported") as err:
        RunSpec(dtype="float64")
    assert "auto, float32, bfloat16" in err.value.fix


def test_gradient_checkpointing_is_a_switch_outside_the_hash() -> None:
    assert RunSpec(gradient_checkpointing="on").hash == RunSpec(gradient_checkpointing="off").hash == RunSpec().hash
    assert resolve_settings(None, None, {"gradient_checkpointing": True})["gradient_checkpointing"] == "on"
    with pytest.raises(FedbenchError, match="'sometimes' is not a choice"):
        RunSpec(gradient_checkpointing="sometimes")


def test_auto_checkpointing_follows_free_memory(tiny_model, monkeypatch) -> None:
    config = load_base(str(tiny_model))[0].config
    need = hardware.activation_bytes(config, sequences=8, length=256, dtype="float32")
    monkeypatch.setattr(hardware, "free_memory", lambda: 100 * need)
    assert hardware.gradient_checkpointing("auto", config, 8, 256, "float32").value is False
    monkeypatch.setattr(hardware, "free_memory", lambda: need)
    roomy = hardware.gradient_checkpointing("auto", config, 8, 256, "float32")
    assert roomy.value is True and "more than half" in roomy.reason
    assert hardware.gradient_checkpointing("on", config, 8, 256, "float32") == hardware.Choice(True, "as set")
    assert hardware.activation_bytes(config, 8, 256, "bfloat16") * 2 == need


def trainer_settings_seen(monkeypatch, name: str) -> list:  # noqa: ANN001
    """The value of ``KTOTrainer.args.<name>`` each time a KTO trainer starts training, in order."""
    from trl import KTOTrainer

    seen: list = []
    real = KTOTrainer.train

    def train(self, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(getattr(self.args, name))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(KTOTrainer, "train", train)
    return seen


def test_a_run_records_how_it_ran_and_the_trainer_obeys(tiny_model, pairs_file, tmp_path, monkeypatch) -> None:
    seen = trainer_settings_seen(monkeypatch, "gradient_checkpointing")
    spec = tiny_spec(tiny_model, pairs_file, rounds=1, gradient_checkpointing="on")
    notes = []
    outcome = run_federation(build_cell(spec, load_registry(entry_points=False)), tmp_path, on_note=notes.append)
    execution = json.loads((outcome.run_dir / "result.json").read_text())["execution"]
    assert execution["dtype"] == spec.dtype == hardware.auto_dtype().value
    assert execution["gradient_checkpointing"] is True and execution["gradient_checkpointing_reason"] == "as set"
    assert seen == [True] * spec.clients_per_round
    assert len(notes) == 1 and "gradient checkpointing on" in notes[0] and spec.dtype in notes[0]


@pytest.mark.parametrize(("method", "layout"), [("kto", "original"), ("dpo", "original")])
def test_bfloat16_training_tracks_float32(tiny_model, pairs_file, tmp_path, method, layout) -> None:
    """bfloat16 base weights (adapter in float32, bfloat16 autocast) follow the float32 loss curve.

    Stated tolerance: over 4 rounds at lr 5e-3, every round's mean loss within 1e-3 of float32's and
    within a tenth of the distance the float32 curve travels (so the curves cannot cross by noise).
    Measured on the tiny model: gaps up to 5e-5 while the curves travel 2e-3 (KTO) and 2.4e-2 (DPO).
    """
    registry = load_registry(entry_points=False)
    curves = {}
    for dtype in ("float32", "bfloat16"):
        spec = tiny_spec(tiny_model, pairs_file, method=method, layout=layout, rounds=4, dtype=dtype)
        curves[dtype] = [h.loss for h in run_federation(build_cell(spec, registry), tmp_path / dtype).history]
    assert all(math.isfinite(x) for x in curves["bfloat16"])
    gaps = [abs(a - b) for a, b in zip(curves["float32"], curves["bfloat16"])]
    travel = abs(curves["float32"][0] - curves["float32"][-1])
    assert max(gaps) <= min(1e-3, travel / 10), (curves, gaps)
    assert curves["float32"] != curves["bfloat16"], "the two runs really used different precisions"


def test_scoring_only_labelled_positions_keeps_the_log_probs(tiny_model) -> None:
    """fedbench gathers the labelled positions before TRL's vocabulary projection on a CPU; the values stay TRL's."""
    from trl.trainer import utils as trl_utils
    from trl.trainer.utils import add_fused_lm_head

    assert hasattr(trl_utils, "_use_triton"), "TRL moved the switch scored_positions_only flips: the CPU fast path is off"
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)  # not the shared one: TRL patches it
    add_fused_lm_head(model)
    torch.manual_seed(0)
    ids = torch.randint(3, model.config.vocab_size, (3, 12))
    labels = ids.clone()
    labels[:, :7] = -100  # prompt positions
    labels[1, 10:] = -100  # padding
    with torch.no_grad():
        full = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
        with scored_positions_only():
            gathered = model(input_ids=ids, labels=labels, fused_lm_head=True).log_probs
    assert full.shape == gathered.shape == labels[:, 1:].shape
    torch.testing.assert_close(gathered, full, rtol=1e-5, atol=1e-6)
    scored = labels[:, 1:] != -100
    assert bool((gathered[~scored] == 0).all()) and bool((gathered[scored] < 0).all())


def test_freed_heap_pages_go_back_where_the_c_library_is_glibc() -> None:
    import platform

    from fedbench.harness.hardware import release_freed_memory

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("malloc_trim is glibc's")
    assert release_freed_memory() is True
