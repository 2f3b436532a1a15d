"""Malicious clients: which ones (a seeded share of the federation), what they do (the attack plugin), where it is said.

A run with ``attack = NAME`` makes ``round(fraction x N)`` of its N clients malicious, drawn from the run's seed
alone, so a resumed run (and every cell of one seed) has the same ones; ``attack.json`` in the run directory names
them, so honest and malicious clients' held-out scores (``fedbench leaderboard --clients``) can be told apart. A
malicious client poisons its training examples once (:meth:`Attack.poison_examples`: label-flip) and its update in
every round it is sampled (:meth:`Attack.poison_update`: sign-flip, scale, noise), before its codec encodes it: the
server cannot tell. Its held-out pairs are never poisoned. Only engines whose clients run in this process play the
attack (``CellDriver.plays_clients``); the others refuse it before training.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fedbench.harness.data import Example
from fedbench.harness.errors import FedbenchError
from fedbench.harness.interfaces import Attack

if TYPE_CHECKING:
    from fedbench.harness.spec import RunSpec

ATTACK_FILE = "attack.json"
"""The run directory's record of its attack: the plugin, its settings and the malicious clients."""


def malicious_clients(attack: Attack, client_ids: Sequence[str], seed: int) -> tuple[str, ...]:
    """The malicious clients, sorted: round(fraction x N) of the N clients, drawn from the run's seed.

    Refuses a share that leaves no honest client, or that rounds to no malicious one (fraction 0 asks for none).
    """
    n = len(client_ids)
    k = math.floor(attack.fraction * n + 0.5)
    if k >= n:
        raise FedbenchError(
            f"attack '{attack.name}' with fraction {attack.fraction} makes round({attack.fraction} x {n}) = {k} of the "
            f"federation's {n} clients malicious, leaving no honest client",
            f"set attack_params.fraction to at most {(n - 1) / n:.3g}",
        )
    if k == 0 and attack.fraction > 0:
        raise FedbenchError(
            f"attack '{attack.name}' with fraction {attack.fraction} makes round({attack.fraction} x {n}) = 0 of the "
            f"federation's {n} clients malicious",
            f"set attack_params.fraction to at least {0.5 / n:.3g}, or 0 (no malicious client) on purpose",
        )
    return tuple(sorted(random.Random(f"{seed}:attack").sample(sorted(client_ids), k)))


def record_attack(path: Path, spec: RunSpec, malicious: Sequence[str], num_clients: int) -> None:
    """Write ``attack.json``: the attack, its settings, the federation's size and who is malicious."""
    record = {"attack": spec.attack, "params": dict(spec.attack_params), "clients": num_clients, "malicious": list(malicious)}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def poisoned_examples(attack: Attack, client_id: str, examples: Sequence[Example], seed: int) -> list[Example]:
    """A malicious client's training examples as it trains on them: the attack's, drawn from (seed, client)."""
    return attack.poison_examples(examples, random.Random(f"{seed}:attack:{client_id}"))
