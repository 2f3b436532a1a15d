"""Attacks: who is malicious (seeded, recorded), what each attack does, and a planted client really training on flips."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch
from test_aggregators import tiny_spec

from fedbench.harness.attacks import ATTACK_FILE, malicious_clients
from fedbench.harness.cli import _parse_sets
from fedbench.harness.data import LabeledExample, PreferencePair
from fedbench.harness.errors import FedbenchError
from fedbench.harness.federation import LocalDriver, build_cell, run_federation
from fedbench.harness.flower.server import FlowerDriver
from fedbench.harness.registry import load_registry
from fedbench.harness.rounds import client_behaviour
from fedbench.harness.spec import RunSpec
from fedbench.plugins.attacks.labelflip import LabelFlip
from fedbench.plugins.attacks.poison import Noise, Scale, SignFlip

PAIRS = [PreferencePair(f"p{i}", "u", f"q{i}", f"good{i}", f"bad{i}") for i in range(10)]
LABELED = [LabeledExample(f"e{i}", "u", f"q{i}", f"a{i}", i % 2 == 0) for i in range(10)]


def test_label_flip_swaps_chosen_and_rejected_and_inverts_labels() -> None:
    flipped = LabelFlip().poison_examples(PAIRS, random.Random(0))
    assert [(p.chosen, p.rejected) for p in flipped] == [(f"bad{i}", f"good{i}") for i in range(10)]
    assert [e.label for e in LabelFlip().poison_examples(LABELED, random.Random(0))] == [i % 2 == 1 for i in range(10)]


def test_label_flip_of_a_share_of_examples_is_seeded() -> None:
    half = LabelFlip(examples=0.5)
    first = half.poison_examples(PAIRS, random.Random("0:attack:u"))
    assert sum(p.chosen.startswith("bad") for p in first) == 5
    assert first == half.poison_examples(PAIRS, random.Random("0:attack:u"))
    assert first != half.poison_examples(PAIRS, random.Random("1:attack:u"))


def test_update_poisoning_by_hand() -> None:
    x, trained = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([2.0, 0.0])}  # the client's step: (1, -2)
    gen = torch.Generator().manual_seed(0)
    assert Scale(factor=10).poison_update(x, trained, gen)["w"].tolist() == [11.0, -18.0]
    assert SignFlip().poison_update(x, trained, gen)["w"].tolist() == [0.0, 4.0]
    assert SignFlip(factor=2).poison_update(x, trained, gen)["w"].tolist() == [-1.0, 6.0]
    noisy = Noise(std=0.5).poison_update(x, trained, torch.Generator().manual_seed(7))
    assert torch.equal(noisy["w"], Noise(std=0.5).poison_update(x, trained, torch.Generator().manual_seed(7))["w"])
    assert not torch.equal(noisy["w"], trained["w"]) and not torch.equal(noisy["w"], x["w"])


def test_malicious_clients_are_seeded_and_leave_an_honest_one() -> None:
    ids = [f"c{i}" for i in range(12)]
    chosen = malicious_clients(LabelFlip(fraction=0.25), ids, seed=0)
    assert len(chosen) == 3 and chosen == malicious_clients(LabelFlip(fraction=0.25), list(reversed(ids)), seed=0)
    assert chosen != malicious_clients(LabelFlip(fraction=0.25), ids, seed=1)
    assert malicious_clients(LabelFlip(fraction=0.0), ids, seed=0) == ()
    with pytest.raises(FedbenchError, match="= 4 of the federation's 4 clients malicious, leaving no honest client"):
        malicious_clients(LabelFlip(fraction=0.9), ids[:4], seed=0)
    with pytest.raises(FedbenchError, match=r"round\(0.1 x 4\) = 0"):
        malicious_clients(LabelFlip(fraction=0.1), ids[:4], seed=0)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: LabelFlip(fraction=1.5), "fraction 1.5 is not a share of the clients in [0, 1]"),
        (lambda: LabelFlip(fraction=-0.1), "fraction -0.1 is not a share"),
        (lambda: LabelFlip(examples=0), "examples 0 is not a share"),
        (lambda: Noise(std=0), "got std=0"),
        (lambda: SignFlip(factor=-1), "got factor=-1"),
    ],
)
def test_bad_attack_settings_are_refused(make, words: str) -> None:
    with pytest.raises(FedbenchError, match=words.replace("[", r"\[").replace("]", r"\]")):
        make()


def test_spec_tag_names_the_attack_and_default_hash_is_kept() -> None:
    assert RunSpec(attack="label-flip").tag == "label-flip 25%"
    assert RunSpec(attack="scale", attack_params=(("factor", 5.0), ("fraction", 0.5))).tag == "scale 50% factor=5.0"
    assert RunSpec(attack="none").hash == RunSpec().hash and RunSpec(attack="noise").hash != RunSpec().hash


def test_set_reaches_a_table_entry() -> None:
    assert _parse_sets(["attack=label-flip", "attack_params.fraction=0.25", "attack_params.examples=0.5"]) == {
        "attack": "label-flip",
        "attack_params": {"fraction": 0.25, "examples": 0.5},
    }
    with pytest.raises(FedbenchError, match="not a table"):
        _parse_sets(["rounds=2", "rounds.x=1"])


def test_an_engine_whose_clients_run_elsewhere_refuses_an_attack(tmp_path: Path) -> None:
    from fedbench.harness.checkpoint import RunDir

    cell = build_cell(RunSpec(attack="label-flip"), load_registry(entry_points=False))
    run_dir = RunDir(tmp_path, cell.spec)
    with pytest.raises(FedbenchError, match="flower engine's clients run in other processes"):
        client_behaviour(cell, FlowerDriver.__new__(FlowerDriver), {"a": 1, "b": 1}, run_dir)


def test_a_planted_client_trains_on_flipped_pairs_and_the_run_records_it(tiny_model, pairs_file, tmp_path, monkeypatch) -> None:
    trained: dict[str, list] = {}
    real = LocalDriver.training

    def spy(self, ctx, client_id):  # noqa: ANN001
        trained[client_id] = real(self, ctx, client_id)
        return trained[client_id]

    monkeypatch.setattr(LocalDriver, "training", spy)
    spec = tiny_spec(tiny_model, pairs_file, method="dpo", layout="original", attack="label-flip")
    outcome = run_federation(build_cell(spec, load_registry(entry_points=False)), tmp_path)
    record = json.loads((outcome.run_dir / ATTACK_FILE).read_text())
    assert record["attack"] == "label-flip" and record["clients"] == 4 and len(record["malicious"]) == 1
    [bad] = record["malicious"]
    assert all(p.chosen == "I don't know." for p in trained[bad])
    assert all(p.rejected == "I don't know." for cid, pairs in trained.items() if cid != bad for p in pairs)


def test_the_clients_view_reports_honest_and_malicious_clients_apart(tmp_path: Path) -> None:
    from fedbench.harness.results.model import build_matrix, client_views
    from fedbench.harness.results.render_markdown import clients_markdown
    from fedbench.harness.results.runs import client_attackers
    from fedbench.harness.store import ScoreRow

    run_dir = tmp_path / "dpo-original-fedavg-abc123"
    run_dir.mkdir()
    (run_dir / ATTACK_FILE).write_text(json.dumps({"attack": "label-flip", "malicious": ["c1"]}))
    per_client = json.dumps({"c0": [80.0, 5], "c1": [40.0, 5], "c2": [70.0, 5]})
    rows = [
        ScoreRow(s, "preference.reward", "likelihood", "dpo", "original", "fedavg", "m", 63.3, 100.0, 15, 0, "s",
                 per_client=per_client, tag=tag)
        for s, tag in (("abc123", "label-flip 25%"), ("clean1", ""))
    ]  # fmt: skip
    views = client_views(build_matrix(rows), attackers=lambda r: client_attackers(tmp_path, r.subject))
    poisoned = next(v for v in views if "label-flip" in v.cell)
    assert poisoned.malicious == ("c1",) and poisoned.mean_of(False) == 75.0 and poisoned.mean_of(True) == 40.0
    text = clients_markdown(views)
    assert "| 75.0 / 40.0 (1) |" in text, "honest / malicious means, with how many were malicious"
    clean = next(line for line in text.splitlines() if line.startswith("| DPO fedavg |"))
    assert "/ " not in clean, "a cell without an attack has no split"
