"""Per-client aggregator state lives in the run directory's client store: checkpoints hold only the server's state."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from fedbench.harness.checkpoint import CLIENT_STATE_DIR, ClientStateStore
from fedbench.harness.federation import build_cell, run_federation
from fedbench.harness.registry import load_registry
from fedbench.harness.rounds import sample_clients
from tests.conftest import write_pairs
from tests.test_resume import _crash_after_round, _spec

CLIENTS, PER_ROUND, ROUNDS, CRASH_AFTER = 12, 10, 2, 1


def test_scaffold_after_many_clients_resumes_bit_for_bit_with_checkpoints_of_the_round_size(tiny_model, tmp_path) -> None:
    data = write_pairs(tmp_path / "many.jsonl", n=2 * CLIENTS, clients=CLIENTS)
    spec = _spec(
        tiny_model,
        data,
        method="dpo",
        layout="original",
        aggregator="scaffold",
        rounds=ROUNDS,
        clients_per_round=PER_ROUND,
        local_steps=1,
        holdout=0.0,
        dtype="float32",
    )
    registry = load_registry(entry_points=False)
    ids = sorted({f"user{c}" for c in range(CLIENTS)})
    trained = set()
    for r in range(CRASH_AFTER):
        trained |= set(sample_clients(ids, PER_ROUND, spec.seed, r))
    assert len(trained) >= PER_ROUND, "the crash comes after many distinct clients have a control variate"

    straight = run_federation(build_cell(spec, registry), tmp_path / "a")
    with pytest.raises(RuntimeError, match="simulated crash"):
        run_federation(build_cell(spec, registry), tmp_path / "b", on_event=_crash_after_round(CRASH_AFTER))
    crashed = next((tmp_path / "b").iterdir())
    on_disk = ClientStateStore(crashed / CLIENT_STATE_DIR)
    on_disk.at_round(CRASH_AFTER)
    assert on_disk.clients() == trained, "every c_i is on disk"
    resumed = run_federation(build_cell(spec, registry), tmp_path / "b")

    a = load_file(straight.run_dir / "adapter" / "adapter_model.safetensors")
    b = load_file(resumed.run_dir / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    rounds = sorted((resumed.run_dir / "rounds").iterdir())
    server = [load_file(r / "server.safetensors") for r in rounds]
    assert all(set(s) == {k for k in server[0] if k.startswith("c/")} for s in server), "a checkpoint holds c, no c_i"
    store = resumed.run_dir / CLIENT_STATE_DIR
    last = sample_clients(ids, PER_ROUND, spec.seed, ROUNDS - 1)
    written_last = list(store.glob(f"*/{ROUNDS:05d}.safetensors"))
    assert len(written_last) == len(last), "the last round wrote one file per client it trained, no more"
    assert all(len(list(d.iterdir())) == 1 for d in store.iterdir()), "between rounds, one file per client"
    final_variates = ClientStateStore(store)
    final_variates.at_round(ROUNDS)
    straight_variates = ClientStateStore(straight.run_dir / CLIENT_STATE_DIR)
    straight_variates.at_round(ROUNDS)
    for client in sorted(final_variates.clients())[:5]:
        x, y = final_variates.get(client), straight_variates.get(client)
        assert x is not None and y is not None and all(torch.equal(x[k], y[k]) for k in x)


def test_a_forced_rerun_starts_without_the_old_client_state(tmp_path) -> None:
    store = ClientStateStore(tmp_path / CLIENT_STATE_DIR)
    store.at_round(1)
    store.put("a/b c", {"w": torch.ones(2)})  # any client id, path-unsafe characters included
    store.checkpointed()
    store.at_round(2)
    store.put("a/b c", {"w": torch.full((2,), 2.0)})
    store.at_round(1)
    assert torch.equal(store.get("a/b c")["w"], torch.ones(2)), "until round 2's checkpoint, round 1's version stays"
    store.discard_after(1)  # resume from checkpoint 1: round 2's write never happened
    store.at_round(5)
    assert torch.equal(store.get("a/b c")["w"], torch.ones(2))
    store.discard_after(0)
    assert store.clients() == set() and store.get("a/b c") is None
