"""A held-out evaluation split of the preference pairs, taken per client before any layout sees the data.

The split is made on the pairs themselves, before a method turns them into examples and before a
layout spreads those over clients. Two things follow:

* every method and layout run on one data set (DPO, KTO with the original layout "KTOO", KTO
  redistributed "KTOR") is evaluated on exactly the same held-out pairs, so their preference
  accuracies compare like with like;
* redistribution (KTOR) shuffles only the training examples it is given, so its shuffle can never
  move a held-out example, or the other half of a held-out pair, into some client's training data.

Each client holds out ``ceil(fraction * n)`` of its ``n`` pairs, chosen by a random generator
seeded with ``"{seed}:{client_id}"``: a client's held-out pairs depend only on the split seed, the
client and its own pairs, not on other clients or on the training seed. A client with a single pair
keeps it for training (there is nothing to compare it against), and the fraction must leave every
client at least one training pair.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from fedbench.harness.data import PreferencePair, load_pairs, read_json_rows, validate_rows, write_examples
from fedbench.harness.errors import FedbenchError

if TYPE_CHECKING:
    from fedbench.harness.spec import RunSpec

HOLDOUT_FILE = "heldout.jsonl"
"""The held-out pairs of a run, beside its other outputs (written by :func:`write_heldout`)."""


def _held_count(fraction: float, n: int) -> int:
    # round() first: 0.3 * 10 is 3.0000000000000004 in floating point, which must still hold out 3, not 4
    return math.ceil(round(fraction * n, 9))


def split_holdout(
    pairs: Sequence[PreferencePair], fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """(training pairs, held-out pairs), both in input order; see the module docstring for the rule.

    Raises :class:`FedbenchError` for a fraction outside [0, 1) and for one that would leave a
    client with two or more pairs without a training pair.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction < 1:
        raise FedbenchError(
            f"holdout fraction {fraction!r} is outside [0, 1): it is the share of each client's pairs kept for evaluation",
            "use a fraction such as 0.1 (0 holds out nothing)",
        )
    if fraction == 0:
        return list(pairs), []
    by_client: dict[str, list[int]] = {}
    for index, pair in enumerate(pairs):
        by_client.setdefault(pair.client_id, []).append(index)
    sizes = [len(indices) for indices in by_client.values() if len(indices) >= 2]
    held: set[int] = set()
    for client_id, indices in by_client.items():
        n = len(indices)
        if n < 2:
            continue  # a single pair stays in training: holding it out would leave the client nothing
        k = _held_count(fraction, n)
        if k >= n:
            largest = min((m - 1) / m for m in sizes)
            raise FedbenchError(
                f"holdout fraction {fraction} leaves client '{client_id}' with no training pair: it has {n} pairs "
                f"and ceil({fraction} x {n}) = {k} would be held out",
                f"use a smaller holdout fraction (at most {largest:.4g} keeps a training pair on every client)",
            )
        held.update(random.Random(f"{seed}:{client_id}").sample(indices, k))
    train = [p for i, p in enumerate(pairs) if i not in held]
    heldout = [p for i, p in enumerate(pairs) if i in held]
    return train, heldout


def split_data(spec: RunSpec) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """The spec's data as (training, held-out) pairs: the held-out split comes first, before any method or layout."""
    return split_holdout(load_pairs(spec.data, dict(spec.data_columns)), spec.holdout, spec.partition_seed)


def write_heldout(path: Path, pairs: Sequence[PreferencePair]) -> None:
    """The held-out pairs as JSONL, written atomically (the same file format a deployment site's pairs use)."""
    write_examples(Path(path), pairs)


def read_heldout(path: Path) -> list[PreferencePair]:
    """The pairs :func:`write_heldout` stored, validated row by row (an empty file is an empty holdout)."""
    path = Path(path)
    if not path.is_file():
        raise FedbenchError(f"held-out pairs file '{path}' does not exist", "rerun the split that writes it, or check the path")
    if not path.read_text(encoding="utf-8").strip():
        return []
    return validate_rows(read_json_rows(path), str(path))


def trained_reward(path: Path) -> str:
    """The implicit reward (``Method.reward``) of the objective trained by the run whose held-out file this is.

    Read from the run's ``spec.json`` beside the file, so a benchmark given only the file can rank pairs by the
    subject's own reward; ``log_ratio`` (DPO's) for a file outside a run directory or a method no longer installed.
    """
    import json

    from fedbench.harness.registry import default_registry

    spec_file = Path(path).parent / "spec.json"
    if not spec_file.is_file():
        return "log_ratio"
    spec = json.loads(spec_file.read_text(encoding="utf-8"))
    record = default_registry().find("method", spec.get("method", ""))
    return getattr(record.plugin, "reward", "log_ratio") if record is not None else "log_ratio"


def same_heldout(a: Path | None, b: Path | None) -> bool:
    """Whether two held-out files hold the same pairs (cells of one data set and split write identical files)."""
    if a is None or b is None:
        return a is b
    return a == b or Path(a).read_bytes() == Path(b).read_bytes()
