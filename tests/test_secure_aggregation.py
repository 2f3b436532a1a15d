"""Secure aggregation (Flower's SecAgg+) on the Flower engine: it ends on the local engine's adapter; SCAFFOLD is refused."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import write_pairs
from safetensors.torch import load_file

from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import build_cell, run_federation
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec
from tests.test_federation import tiny_spec

pytest.importorskip("flwr", reason="Flower is not installed: pip install 'fedbench[flower]'")
pytest.importorskip("ray", reason="Flower's simulation engine needs Ray: pip install 'fedbench[flower]'")
secure = pytest.importorskip("fedbench.harness.flower.secure")
from fedbench.harness.flower.launch import Resources  # noqa: E402


def spec_for(model: Path, data: Path, **overrides: Any) -> RunSpec:
    return tiny_spec(model, data, **({"method": "kto", "layout": "original"} | overrides))


def adapter_at(run_dir: Path, round_number: int) -> dict[str, Any]:
    return load_file(run_dir / "rounds" / f"round_{round_number:05d}" / "adapter.safetensors")


def test_secure_simulation_reaches_the_local_engines_adapter(tiny_model, tmp_path) -> None:
    """SecAgg+ quantizes each client's change onto 2**30 levels of [-4, 4]: plus float32 rounding the adapter
    ends ~1.5e-8 from the local engine's (measured), far below
    TOLERANCE (1e-6) and far below what a wrong client, weight or round would do (every entry moves by ~5e-3)."""
    data = write_pairs(tmp_path / "pairs.jsonl", n=12, clients=3)  # 6/3/3 examples: unequal weights
    spec = spec_for(tiny_model, data, aggregator="fedavg", seed=2)  # seed 2: user1+user2, then user1+user0
    registry = load_registry(entry_points=False)
    local = run_federation(build_cell(spec, registry), tmp_path / "local")
    started = time.perf_counter()
    simulated = secure.simulate_secure(build_cell(spec, registry), tmp_path / "secure", Resources(num_cpus=1, num_gpus=0))
    seconds = time.perf_counter() - started

    a, b = adapter_at(local.run_dir, 2), adapter_at(simulated.run_dir, 2)
    start = adapter_at(local.run_dir, 1)
    assert a.keys() == b.keys()
    assert max((a[k] - start[k]).abs().max().item() for k in a) > 1e-3, "round 2 must move the adapter"
    difference = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"secure simulation: {seconds:.1f} s, max |local - secure| = {difference:.3g}")
    assert difference <= secure.TOLERANCE
    assert [h.clients for h in simulated.history] == [h.clients for h in local.history]
    assert len({tuple(sorted(h.clients)) for h in local.history}) == 2, "the two rounds sample different pairs of clients"
    assert [h.loss for h in simulated.history] == pytest.approx([h.loss for h in local.history], abs=1e-6)
    assert [dict(h.client_loss) for h in simulated.history] == [
        pytest.approx(dict(h.client_loss), abs=1e-6) for h in local.history
    ], "each client's loss travels in the clear, as SecAgg+ leaves metrics"
    assert all(not h.rejected for h in simulated.history)
    result = json.loads((simulated.run_dir / "result.json").read_text())
    assert result["engine"] == secure.ENGINE and result["hash"] == spec.hash
    assert (simulated.adapter_dir / "adapter_model.safetensors").is_file(), "the PEFT adapter is written as by the local engine"

    again = secure.simulate_secure(build_cell(spec, registry), tmp_path / "secure", Resources(num_cpus=1, num_gpus=0))
    assert again.skipped, "a finished cell is not trained again"

    # resume: as if the run had stopped after round 1, it trains round 2 only, to the same adapter
    shutil.rmtree(simulated.run_dir / "rounds" / "round_00002")
    (simulated.run_dir / "result.json").unlink()
    resumed = secure.simulate_secure(build_cell(spec, registry), tmp_path / "secure", Resources(num_cpus=1, num_gpus=0))
    c = adapter_at(resumed.run_dir, 2)
    assert max((a[k] - c[k]).abs().max().item() for k in a) <= secure.TOLERANCE
    assert [h.round for h in resumed.history] == [1, 2]
    assert resumed.history[0] == simulated.history[0], "round 1 is read back from its checkpoint, not trained again"


def test_a_change_secagg_would_clip_or_a_diverged_one_is_refused_by_the_client() -> None:
    """SecAgg+ would clip silently; the client refuses instead (it then drops out, and the server names the reason:
    run end to end with clipping_range=1e-9, the round halts with "secure aggregation halted (user0: ... clipping range")."""
    x = {"a": torch.zeros(3), "b": torch.ones(2, 2)}
    arrays = [t.numpy() for t in x.values()]
    moved = {"a": torch.tensor([0.5, -3.0, 0.0]), "b": torch.ones(2, 2) * 1.25}
    changes = secure.client_change(moved, ["a", "b"], arrays, 4.0, "user0", 0)
    assert [c.tolist() for c in changes] == [[0.5, -3.0, 0.0], [[0.25, 0.25], [0.25, 0.25]]]
    with pytest.raises(FedbenchError, match="clipping range 2"):
        secure.client_change(moved, ["a", "b"], arrays, 2.0, "user0", 0)
    with pytest.raises(FedbenchError, match="NaN or Inf"):
        secure.client_change({"a": torch.tensor([float("nan"), 0, 0]), "b": x["b"]}, ["a", "b"], arrays, 4.0, "user0", 0)


def test_a_failed_clients_reason_is_its_own_message_not_rays_traceback() -> None:
    wrapped = (
        "<class 'ray.exceptions.RayTaskError(ClientAppException)'>:<'ray::ClientAppActor.run() (pid=1)\n  File \"x.py\"\n"
        "Exception ClientAppException occurred. Message: client 'user0' diverged\n  fix: try a lower learning rate'>)"
    )
    assert secure.short_reason(wrapped) == "client 'user0' diverged fix: try a lower learning rate"
    assert secure.short_reason("Traceback\n  File x\nValueError: boom") == "ValueError: boom"


def test_scaffold_is_refused_with_the_reason(tiny_model, tmp_path) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl", n=12, clients=3)
    cell = build_cell(spec_for(tiny_model, data, aggregator="scaffold"), load_registry(entry_points=False))
    with pytest.raises(FedbenchError) as err:
        secure.simulate_secure(cell, tmp_path / "secure", Resources(num_cpus=1, num_gpus=0))
    assert "reads each client's update" in err.value.problem and "securely summed mean" in err.value.problem
    assert "fedavg" in str(err.value.fix)
    assert not (tmp_path / "secure").exists() or not any((tmp_path / "secure").rglob("result.json"))


def test_a_single_client_per_round_is_refused(tiny_model, tmp_path) -> None:
    data = write_pairs(tmp_path / "pairs.jsonl", n=12, clients=3)
    cell = build_cell(spec_for(tiny_model, data, aggregator="fedavg", clients_per_round=1), load_registry(entry_points=False))
    with pytest.raises(FedbenchError, match="at least 2 clients per round"):
        secure.check_secure(cell)


def test_quantization_range_keeps_the_round_sum_below_the_modulus() -> None:
    for k in (2, 3, 4, 5, 8, 16, 100):
        q = secure.quantization_range(k)
        assert k * q < secure.MODULUS_RANGE and q < 2**31
    assert secure.quantization_range(2) == 2**30


def test_the_flag_picks_the_secure_simulation_and_is_refused_where_it_cannot_run() -> None:
    from fedbench.harness.engines import FlowerSimulation, engine_from_flags

    assert engine_from_flags("flower", secure_aggregation=True) == FlowerSimulation(secure_aggregation=True)
    with pytest.raises(FedbenchError, match="does not carry it yet"):
        engine_from_flags("flower", superlink="lab", secure_aggregation=True)
    with pytest.raises(FedbenchError, match="--secure-aggregation only apply"):
        engine_from_flags("local", secure_aggregation=True)
