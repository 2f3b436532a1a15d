"""Aggregators against the papers' rules, written out plainly here, on small hand-made tensors.

Every expected value below is computed with plain tensor arithmetic straight from the formula
(never through ``harness.aggregation`` or a plugin), two clients with n = 1 and n = 3, so the
example weights are 1/4 and 3/4.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from fedbench.harness.aggregation import validate_updates
from fedbench.harness.checkpoint import ClientStateStore
from fedbench.harness.federation import Cell, partition, run_federation
from fedbench.harness.interfaces import Aggregator, ClientUpdate, LocalTrainingArgs, Params
from fedbench.harness.models import attach_lora, fresh_adapter, load_adapter, load_base, read_adapter
from fedbench.harness.registry import load_registry
from fedbench.harness.spec import RunSpec
from fedbench.harness.training import to_dataset, train_client
from fedbench.plugins.aggregators.fedadagrad import FedAdagrad
from fedbench.plugins.aggregators.fedadam import FedAdam
from fedbench.plugins.aggregators.fedavg import FedAvg
from fedbench.plugins.aggregators.fedavgm import FedAvgM
from fedbench.plugins.aggregators.fedprox import FedProx
from fedbench.plugins.aggregators.fedyogi import FedYogi
from fedbench.plugins.aggregators.scaffold import Scaffold

ATOL = 1e-6
SHAPES = {"layer.lora_A.weight": (2, 3), "layer.lora_B.weight": (3,)}
CLIENTS = ("u0", "grp/u1")  # a '/' in a client id must survive SCAFFOLD's state keys
NUM_EXAMPLES = (1, 3)
W = (0.25, 0.75)  # n_i / n, written out
# (local steps K, learning rate) per round, for SCAFFOLD's client half
LOCAL = ((4, 0.1), (2, 0.05))


def tensors(seed: int, scale: float = 1.0) -> Params:
    g = torch.Generator().manual_seed(seed)
    return {k: scale * torch.randn(shape, generator=g) for k, shape in SHAPES.items()}


X0 = tensors(0)
# what each client adds to the global adapter in its local training, per round
OFFSETS = [[tensors(10 + 2 * r + i, scale=0.3) for i in range(2)] for r in range(2)]
GRADS = [[tensors(100 + 2 * r + i) for i in range(2)] for r in range(2)]


def client_params(x: Params, r: int) -> list[Params]:
    return [{k: x[k] + OFFSETS[r][i][k] for k in x} for i in range(2)]


def run_round(agg: Aggregator, x: Params, r: int) -> Params:
    """One round as the harness runs it: client hook, local result, finish, validate, aggregate."""
    updates = []
    for i, y in enumerate(client_params(x, r)):
        hook = agg.client_hook(CLIENTS[i], x)
        update = ClientUpdate(CLIENTS[i], y, NUM_EXAMPLES[i])
        if hook is not None:
            update = hook.finish(update, *LOCAL[r])
        updates.append(update)
    accepted, rejected = validate_updates(x, updates)
    assert not rejected
    return agg.aggregate(x, accepted)


def assert_close(actual: Params, expected: Params) -> None:
    assert list(actual) == list(expected), "keys (and their order) are the global adapter's"
    for k in expected:
        torch.testing.assert_close(actual[k], expected[k], atol=ATOL, rtol=0)


# ---- the papers' rules, plainly -------------------------------------------------------------


def plain_delta(x: Params, ys: list[Params]) -> Params:
    return {k: W[0] * (ys[0][k] - x[k]) + W[1] * (ys[1][k] - x[k]) for k in x}


class PlainFedAvg:
    def step(self, x: Params, ys: list[Params]) -> Params:
        return {k: W[0] * ys[0][k] + W[1] * ys[1][k] for k in x}


class PlainFedAvgM:
    def __init__(self, eta: float, beta: float) -> None:
        self.eta, self.beta, self.v = eta, beta, {k: torch.zeros(s) for k, s in SHAPES.items()}

    def step(self, x: Params, ys: list[Params]) -> Params:
        d = plain_delta(x, ys)
        self.v = {k: self.beta * self.v[k] + d[k] for k in x}
        return {k: x[k] + self.eta * self.v[k] for k in x}


class PlainAdaptive:
    def __init__(self, rule: str, eta: float, beta1: float, beta2: float, tau: float) -> None:
        self.rule, self.eta, self.b1, self.b2, self.tau = rule, eta, beta1, beta2, tau
        self.m = {k: torch.zeros(s) for k, s in SHAPES.items()}
        self.v = {k: torch.full(s, tau**2) for k, s in SHAPES.items()}

    def step(self, x: Params, ys: list[Params]) -> Params:
        d = plain_delta(x, ys)
        out = {}
        for k in x:
            self.m[k] = self.b1 * self.m[k] + (1 - self.b1) * d[k]
            d2 = d[k] * d[k]
            if self.rule == "adagrad":
                self.v[k] = self.v[k] + d2
            elif self.rule == "yogi":
                self.v[k] = self.v[k] - (1 - self.b2) * d2 * torch.sign(self.v[k] - d2)
            else:
                self.v[k] = self.b2 * self.v[k] + (1 - self.b2) * d2
            out[k] = x[k] + self.eta * self.m[k] / (torch.sqrt(self.v[k]) + self.tau)
        return out


# tau = 0.1 makes v_0 = 0.01 comparable to Delta^2, so Yogi's sign takes both values
ADAPTIVE = dict(server_lr=0.5, beta1=0.8, beta2=0.9, tau=0.1)
CASES: dict[str, tuple[Callable[[], Aggregator], Callable[[], object]]] = {
    "fedavg": (FedAvg, PlainFedAvg),
    "fedprox": (lambda: FedProx(mu=0.1), PlainFedAvg),
    "fedavgm": (lambda: FedAvgM(server_lr=0.7, momentum=0.9), lambda: PlainFedAvgM(0.7, 0.9)),
    "fedavgm-defaults": (FedAvgM, lambda: PlainFedAvgM(1.0, 0.9)),
    "fedadagrad": (lambda: FedAdagrad(server_lr=0.5, beta1=0.8, tau=0.1), lambda: PlainAdaptive("adagrad", 0.5, 0.8, 0.0, 0.1)),
    "fedyogi": (lambda: FedYogi(**ADAPTIVE), lambda: PlainAdaptive("yogi", 0.5, 0.8, 0.9, 0.1)),
    "fedadam": (lambda: FedAdam(**ADAPTIVE), lambda: PlainAdaptive("adam", 0.5, 0.8, 0.9, 0.1)),
    "fedyogi-defaults": (FedYogi, lambda: PlainAdaptive("yogi", 1e-2, 0.9, 0.99, 1e-3)),
    "fedadam-defaults": (FedAdam, lambda: PlainAdaptive("adam", 1e-2, 0.9, 0.99, 1e-3)),
    "fedadagrad-defaults": (FedAdagrad, lambda: PlainAdaptive("adagrad", 1e-2, 0.9, 0.99, 1e-3)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_two_rounds_match_the_paper_formula(case: str) -> None:
    make, make_plain = CASES[case]
    agg, plain = make(), make_plain()
    agg.setup(X0)
    x, x_plain = X0, X0
    for r in range(2):
        expected = plain.step(x_plain, client_params(x_plain, r))
        x = run_round(agg, x, r)
        assert_close(x, expected)
        x_plain = expected
    assert any(not torch.allclose(x[k], X0[k]) for k in x), "the example must move the adapter"


def test_yogi_example_exercises_both_signs() -> None:
    """Guard on the example itself: Delta^2 is below v_0 somewhere and above it elsewhere."""
    d2 = torch.cat([v.flatten() ** 2 for v in plain_delta(X0, client_params(X0, 0)).values()])
    assert (d2 < ADAPTIVE["tau"] ** 2).any() and (d2 > ADAPTIVE["tau"] ** 2).any()


def test_scaffold_client_and_server_halves_match_the_paper() -> None:
    eta_g, n_total = 0.5, 3  # a third client never sampled: N = 3, not 2
    agg = Scaffold(server_lr=eta_g, num_clients=n_total)
    agg.setup(X0)
    x = X0
    c = {k: torch.zeros(s) for k, s in SHAPES.items()}
    c_i = [dict(c), dict(c)]
    for r in range(2):
        steps, lr = LOCAL[r]
        ys = client_params(x, r)
        updates, delta_c = [], []
        for i in range(2):
            hook = agg.client_hook(CLIENTS[i], x)
            params = {k: torch.nn.Parameter(ys[i][k].clone()) for k in x}
            for k, p in params.items():
                p.grad = GRADS[r][i][k].clone()
            hook.on_gradients(params)
            assert_close({k: p.grad for k, p in params.items()}, {k: GRADS[r][i][k] - c_i[i][k] + c[k] for k in x})

            update = hook.finish(ClientUpdate(CLIENTS[i], ys[i], NUM_EXAMPLES[i]), steps, lr)
            c_plus = {k: c_i[i][k] - c[k] + (x[k] - ys[i][k]) / (steps * lr) for k in x}
            delta_c.append({k: c_plus[k] - c_i[i][k] for k in x})
            assert_close(update.extras, delta_c[i])
            c_i[i] = c_plus
            updates.append(update)

        new_x = agg.aggregate(x, updates)
        assert_close(new_x, {k: x[k] + eta_g * (W[0] * (ys[0][k] - x[k]) + W[1] * (ys[1][k] - x[k])) for k in x})
        c = {k: c[k] + (delta_c[0][k] + delta_c[1][k]) / n_total for k in x}
        state = agg.state_dict()
        assert_close({k: state[f"c/{k}"] for k in x}, c)
        assert set(state) == {f"c/{k}" for k in x}, "the checkpointed state is c; each c_i lives in the client store"
        for i in range(2):
            assert_close(agg.client_states.get(CLIENTS[i]), c_i[i])
        x = new_x
    assert any(not torch.allclose(c[k], torch.zeros_like(c[k])) for k in c), "round 2 must have a nonzero correction"


def test_scaffold_without_num_clients_uses_the_clients_seen() -> None:
    agg = Scaffold()
    agg.setup(X0)
    run_round(agg, X0, 0)
    c = agg.state_dict()
    x, ys = X0, client_params(X0, 0)
    steps, lr = LOCAL[0]
    expected = {k: sum((x[k] - y[k]) / (steps * lr) for y in ys) / 2 for k in x}  # N = 2 clients seen
    assert_close({k: c[f"c/{k}"] for k in x}, expected)


def test_fedavg_of_identical_clients_is_the_identity() -> None:
    same = tensors(7)
    updates = [ClientUpdate(cid, {k: t.clone() for k, t in same.items()}, n) for cid, n in zip(CLIENTS, NUM_EXAMPLES)]
    assert_close(FedAvg().aggregate(X0, updates), same)


@pytest.mark.parametrize("case", list(CASES))
def test_no_client_movement_leaves_the_adapter_unchanged(case: str) -> None:
    agg = CASES[case][0]()
    agg.setup(X0)
    updates = [ClientUpdate(cid, {k: t.clone() for k, t in X0.items()}, n) for cid, n in zip(CLIENTS, NUM_EXAMPLES)]
    assert_close(agg.aggregate(X0, updates), X0)


def test_scaffold_with_zero_variates_and_unit_server_lr_is_fedavg() -> None:
    agg = Scaffold(server_lr=1.0)
    agg.setup(X0)
    grads = {k: torch.nn.Parameter(X0[k].clone()) for k in X0}
    for k, p in grads.items():
        p.grad = GRADS[0][0][k].clone()
    agg.client_hook(CLIENTS[0], X0).on_gradients(grads)
    assert all(torch.equal(p.grad, GRADS[0][0][k]) for k, p in grads.items()), "c = c_i = 0: no correction"
    fedavg = FedAvg().aggregate(X0, [ClientUpdate(c, y, n) for c, y, n in zip(CLIENTS, client_params(X0, 0), NUM_EXAMPLES)])
    assert_close(run_round(agg, X0, 0), fedavg)


@pytest.mark.parametrize("case", [*CASES, "scaffold"])
def test_state_round_trip_continues_the_same_trajectory(case: str, tmp_path: Path) -> None:
    make = (lambda: Scaffold(server_lr=0.5, num_clients=3)) if case == "scaffold" else CASES[case][0]
    first = make()
    (tmp_path / "first").mkdir()
    first.use_client_states(ClientStateStore(tmp_path / "first"))
    first.setup(X0)
    x1 = run_round(first, X0, 0)
    state = first.state_dict()
    assert all(t.is_contiguous() for t in state.values())
    save_file(state, tmp_path / "server.safetensors")  # refuses shared storage and non-contiguous tensors
    shutil.copytree(tmp_path / "first", tmp_path / "resumed", dirs_exist_ok=True)
    resumed = make()
    resumed.use_client_states(ClientStateStore(tmp_path / "resumed"))  # as the harness does: the run's store,
    resumed.setup(x1)  # setup from the checkpoint's adapter, then load
    resumed.load_state_dict(load_file(tmp_path / "server.safetensors"))
    x1_copy = {k: t.clone() for k, t in x1.items()}
    a, b = run_round(first, x1, 1), run_round(resumed, x1_copy, 1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert all(torch.equal(first.state_dict()[k], t) for k, t in resumed.state_dict().items())


def test_scaffold_keeps_a_variate_only_for_clients_that_trained() -> None:
    agg = Scaffold(num_clients=3)
    agg.setup(X0)
    run_round(agg, X0, 0)
    assert set(agg.state_dict()) == {f"c/{k}" for k in SHAPES}
    assert agg.client_states.clients() == set(CLIENTS)
    # what a Flower client receives, or a checkpoint written before the client store: ci/ entries go to the store
    legacy = agg.state_dict() | {f"ci/{c}/{k}": t for c in CLIENTS for k, t in agg.client_states.get(c).items()}
    restored = Scaffold(num_clients=3)
    restored.setup(X0)
    restored.load_state_dict(legacy)
    assert restored.client_states.clients() == set(CLIENTS), "a client not in the checkpoint has not trained: it stays absent"
    for c in CLIENTS:
        assert_close(restored.client_states.get(c), agg.client_states.get(c))


def test_loading_another_aggregators_state_is_refused() -> None:
    agg = FedAdam()
    agg.setup(X0)
    with pytest.raises(Exception, match="has no 'm/"):
        agg.load_state_dict({f"v/{k}": torch.zeros(s) for k, s in SHAPES.items()})  # a FedAvgM checkpoint


@pytest.mark.parametrize("case", [*CASES, "scaffold"])
def test_a_nan_update_is_rejected_by_name_and_the_others_aggregated(case: str) -> None:
    make = (lambda: Scaffold(num_clients=3)) if case == "scaffold" else CASES[case][0]
    ids, ns = ("u0", "bad", "u2"), (1, 2, 3)

    def updates(agg: Aggregator, poison: bool) -> list[ClientUpdate]:
        out = []
        for j, (cid, n) in enumerate(zip(ids, ns)):
            y = {k: X0[k] + OFFSETS[0][j % 2][k] * (j + 1) for k in X0}
            hook = agg.client_hook(cid, X0)
            update = ClientUpdate(cid, y, n)
            if hook is not None:
                update = hook.finish(update, *LOCAL[0])
            if cid == "bad" and poison:
                update.params["layer.lora_B.weight"][1] = math.nan
            out.append(update)
        return out

    agg, clean = make(), make()
    agg.setup(X0)
    clean.setup(X0)
    accepted, rejected = validate_updates(X0, updates(agg, poison=True))
    assert [r.client_id for r in rejected] == ["bad"] and "NaN" in rejected[0].reason
    assert [u.client_id for u in accepted] == ["u0", "u2"]
    result = agg.aggregate(X0, accepted)
    expected = clean.aggregate(X0, [u for u in updates(clean, poison=False) if u.client_id != "bad"])
    assert all(torch.equal(result[k], expected[k]) for k in X0)
    assert all(torch.isfinite(t).all() for t in result.values())
    if case == "scaffold":
        assert agg.client_states.get("bad") is None, "a rejected client's control variate must not change"


def test_bad_hyper_parameters_are_refused() -> None:
    for make in (lambda: FedProx(mu=-1), lambda: FedAvgM(momentum=1.0), lambda: FedAdam(tau=0), lambda: Scaffold(num_clients=0)):
        with pytest.raises(Exception, match="got|mu is"):
            make()


# ---- FedProx on the tiny model through the harness -----------------------------------------


def tiny_spec(model: Path, data: Path, **overrides) -> RunSpec:
    base = dict(
        model=str(model),
        data=str(data),
        rounds=1,
        clients_per_round=2,
        local_steps=1,
        batch_size=2,
        learning_rate=5e-3,
        max_length=48,
        lora_r=4,
        lora_alpha=8,
        lora_targets=("q_proj",),
    )
    return RunSpec(**(base | overrides))


def cell_with(spec: RunSpec, aggregator: Aggregator) -> Cell:
    registry = load_registry(entry_points=False)
    return Cell(spec, registry.create("method", spec.method), registry.create("layout", spec.layout), aggregator)


def test_fedprox_with_mu_zero_trains_exactly_like_fedavg(tiny_model, pairs_file, tmp_path) -> None:
    spec = tiny_spec(tiny_model, pairs_file, local_steps=2)  # from step 2 on, any mu > 0 would change the result
    avg = run_federation(cell_with(spec, FedAvg()), tmp_path / "fedavg")
    prox_spec = tiny_spec(tiny_model, pairs_file, local_steps=2, aggregator="fedprox", aggregator_params=(("mu", 0.0),))
    prox = run_federation(cell_with(prox_spec, FedProx(mu=0.0)), tmp_path / "fedprox")
    a = load_file(avg.run_dir / "rounds" / "round_00001" / "adapter.safetensors")
    b = load_file(prox.run_dir / "rounds" / "round_00001" / "adapter.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    start = fresh_adapter(attach_lora(load_base(spec.model)[0], spec.lora), spec.seed)
    assert any(not torch.equal(a[k], start[k]) for k in a), "the round must have trained"


def test_fedprox_pulls_the_client_towards_the_global_adapter(tiny_model, pairs_file, tmp_path) -> None:
    spec = tiny_spec(tiny_model, pairs_file, local_steps=4)
    cell = cell_with(spec, FedAvg())
    examples = max(partition(cell).values(), key=len)
    dataset = to_dataset(cell.method.records(examples, spec.template))
    model, tokenizer = load_base(spec.model)
    peft_model = attach_lora(model, spec.lora)
    x = fresh_adapter(peft_model, spec.seed)
    args = LocalTrainingArgs(
        output_dir=str(tmp_path / "tmp"),
        steps=spec.local_steps,
        batch_size=spec.batch_size,
        grad_accum=1,
        learning_rate=spec.learning_rate,
        max_length=spec.max_length,
        seed=1,
    )

    def distance_after_training(aggregator: Aggregator) -> float:
        load_adapter(peft_model, x)
        train_client(cell.method, peft_model, tokenizer, dataset, args, aggregator.client_hook("u", x))
        y = read_adapter(peft_model)
        return math.sqrt(sum(float((y[k] - x[k]).pow(2).sum()) for k in x))

    free = distance_after_training(FedAvg())
    pulled = distance_after_training(FedProx(mu=100.0))
    assert 0 < pulled < free


def test_a_nan_control_variate_change_is_rejected_even_though_its_names_match_the_params() -> None:
    agg = Scaffold(num_clients=2)
    agg.setup(X0)
    update = agg.client_hook("u0", X0).finish(ClientUpdate("u0", client_params(X0, 0)[0], 1), *LOCAL[0])
    update.extras["layer.lora_A.weight"][0, 0] = math.inf
    accepted, rejected = validate_updates(X0, [update])
    assert not accepted and rejected[0].client_id == "u0" and "extras 'layer.lora_A.weight'" in rejected[0].reason


def test_scaffold_refuses_more_clients_than_num_clients_before_changing_state() -> None:
    agg = Scaffold(num_clients=1)
    agg.setup(X0)
    with pytest.raises(Exception, match="num_clients is 1 but 2 distinct clients"):
        run_round(agg, X0, 0)
    assert agg.client_states.clients() == set() and all(torch.equal(t, torch.zeros_like(t)) for t in agg.c.values())
