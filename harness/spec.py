"""A run is a frozen, hashable spec: the same spec always means the same experiment cell.

Config layers, later wins: RunSpec defaults < a profile from registry.toml < a TOML run
config < command-line flags. Every layer is checked for unknown keys and wrong types before
anything runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from fedbench.harness.errors import FedbenchError, did_you_mean
from fedbench.harness.hardware import DTYPES, SWITCHES, resolve_dtype
from fedbench.harness.interfaces import ATTACK_FRACTION
from fedbench.harness.models import DEFAULT_MODEL, LoraSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

Items = tuple[tuple[str, Any], ...]
DYNAMIC = "dynamic"
DYNAMIC_EPOCHS = 3
"""FedLLM-Bench's Fed-ChatbotPA scripts: local steps sized for about three epochs per client in expectation."""


@dataclass(frozen=True)
class RunSpec:
    """One cell of the experiment matrix, with every setting that changes its result."""

    model: str = DEFAULT_MODEL
    data: str = "demo"
    method: str = "kto"
    layout: str = "redistributed"
    aggregator: str = "fedavg"
    rounds: int = 3
    clients_per_round: int = 3
    local_steps: int | str = 3
    """Optimizer steps per client per round, or ``dynamic``: FedLLM-Bench's per-client count (:meth:`steps_for`)."""
    batch_size: int = 4
    grad_accum: int = 1
    learning_rate: float = 5e-4
    min_learning_rate: float = 0.0
    lr_schedule: str = "cosine"
    max_length: int = 256
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.05
    lora_targets: tuple[str, ...] = ("q_proj", "v_proj")
    template: str = "chat"
    dtype: str = "auto"
    """Precision of the base weights (the LoRA adapter trains in float32 under autocast): ``auto`` is resolved at
    construction to this machine's fast path (harness/hardware.py), so a spec always names what ran."""
    gradient_checkpointing: str = "auto"
    """``on``, ``off`` or ``auto`` (on only when a step's activations would crowd free memory); decided at
    training time. It changes speed and memory, not the result, so it is not part of the spec's hash."""
    partition_seed: int = 2023
    holdout: float = 0.1
    """Share of each client's pairs held out for the ``preference`` benchmark (harness/holdout.py); 0 turns it off."""
    seed: int = 0
    method_params: Items = ()
    layout_params: Items = ()
    aggregator_params: Items = ()
    data_columns: Items = ()
    ref_cache: bool = True
    """Score the base model's reference log-probs once per run (harness/refcache.py) instead of every step."""
    privacy: Items = ()
    """Client-level differential privacy (harness/privacy.py): ``clip_norm`` and ``noise_multiplier`` or
    ``target_epsilon``, ``delta`` (default 1e-5). Empty: off."""
    codec: str = "none"
    """How client updates travel: a codec plugin (none, fp16, bf16, int8, topk, or a third party's); bytes up are
    counted encoded (harness/codec.py)."""
    codec_params: Items = ()
    """The codec's settings, e.g. {block_size = 64} for int8, {fraction = 0.01} for topk."""
    attack: str = "none"
    """What malicious clients do (harness/attacks.py): an attack plugin (label-flip, sign-flip, scale, noise, or a third
    party's), or ``none``: every client honest."""
    attack_params: Items = ()
    """The attack's settings: ``fraction`` of the clients malicious (default 0.25), and its own (label-flip's
    ``examples``, scale's ``factor``, noise's ``std``)."""
    clients: Items = ()
    """How clients behave (harness/availability.py): ``dropout``, ``availability``, ``deadline`` with ``speed`` and
    ``partial``, ``min_reports``. Empty: every sampled client reports every step, as in FedLLM-Bench."""

    def __post_init__(self) -> None:
        if isinstance(self.local_steps, str) and self.local_steps != DYNAMIC:
            raise FedbenchError(
                f"local_steps '{self.local_steps}' is not a number of steps", "set local_steps to 1 or more, or to 'dynamic'"
            )
        counts = ("rounds", "clients_per_round", "local_steps", "batch_size", "grad_accum", "max_length", "lora_r")
        for name in counts:
            if not (name == "local_steps" and self.local_steps == DYNAMIC) and getattr(self, name) < 1:
                raise FedbenchError(f"{name} must be at least 1, got {getattr(self, name)}", f"set {name} to 1 or more")
        if self.learning_rate <= 0:
            raise FedbenchError(f"learning_rate must be positive, got {self.learning_rate}", "set learning_rate > 0")
        if self.lr_schedule not in ("cosine", "constant"):
            raise FedbenchError(f"lr_schedule '{self.lr_schedule}' is unknown", "use 'cosine' or 'constant'")
        if not 0 <= self.holdout < 1:
            raise FedbenchError(
                f"holdout must be in [0, 1), got {self.holdout}", "set holdout to e.g. 0.1, or 0 to hold out nothing"
            )
        if self.dtype not in DTYPES:
            raise FedbenchError(f"dtype '{self.dtype}' is not supported", f"use one of {', '.join(DTYPES)}")
        object.__setattr__(self, "dtype", resolve_dtype(self.dtype))
        if self.gradient_checkpointing not in SWITCHES:
            raise FedbenchError(
                f"gradient_checkpointing '{self.gradient_checkpointing}' is not a choice", f"use one of {', '.join(SWITCHES)}"
            )
        if not 0 <= self.lora_dropout < 1:
            raise FedbenchError(f"lora_dropout must be in [0, 1), got {self.lora_dropout}", "set lora_dropout to e.g. 0.05")
        from fedbench.harness.availability import clients_table
        from fedbench.harness.privacy import privacy_table

        privacy_table(dict(self.privacy))  # checked here, so a bad value stops the command before any cell starts
        clients_table(dict(self.clients))

    @property
    def lora(self) -> LoraSettings:
        return LoraSettings(self.lora_r, self.lora_alpha, self.lora_dropout, self.lora_targets)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; parameter tuples become tables again."""
        out = dataclasses.asdict(self)
        for name in _TABLES:
            out[name] = dict(getattr(self, name))
        out["lora_targets"] = list(self.lora_targets)
        return out

    def _digest(self, drop: tuple[str, ...] = ()) -> str:
        values = self.to_dict()
        if values["ref_cache"]:
            # the cache changes speed and float rounding, not the experiment: leaving its default out keeps the hashes
            # (and run directories) of specs written before the setting existed
            del values["ref_cache"]
        del values["gradient_checkpointing"]  # speed and memory only
        for name, default in _ADDED_LATER.items():
            if values[name] == default:
                del values[name]  # settings added after runs existed: at their default they keep those runs' hashes
        for name in drop:
            del values[name]
        blob = json.dumps(values, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:12]

    @property
    def hash(self) -> str:
        """Stable 12-hex-digit digest of every setting: the run directory's key."""
        return self._digest()

    @property
    def settings_key(self) -> str:
        """Digest of every setting but the training seed: cells that share it are repeats of one experiment."""
        return self._digest(drop=("seed",))

    @property
    def tag(self) -> str:
        """This cell's layout settings and its settings on the privacy, communication, attack and client-behaviour axes,
        '' at their defaults: its leaderboard row says them (``fedavg [paired_fraction=0.5]``, ``fedavg [label-flip 25%]``),
        so a sweep over one of them gives one row per value."""
        parts = [" ".join(f"{k}={v}" for k, v in self.layout_params)] if self.layout_params else []
        if self.privacy:
            p = dict(self.privacy)
            noise = f"eps<={p['target_epsilon']:g}" if "target_epsilon" in p else f"z={p.get('noise_multiplier', 0):g}"
            parts.append(f"DP {noise} C={p.get('clip_norm', 0):g}")
        if self.codec != "none":
            parts.append(" ".join([self.codec] + [f"{k}={v}" for k, v in self.codec_params]))
        if self.attack != "none":
            attack = dict(self.attack_params)
            share = f"{attack.pop('fraction', ATTACK_FRACTION):.0%}"
            parts.append(" ".join([self.attack, share] + [f"{k}={v}" for k, v in attack.items()]))
        clients = dict(self.clients)
        if clients.get("dropout"):
            parts.append(f"dropout {clients['dropout']:.0%}")
        if "availability" in clients:
            parts.append(f"trace {Path(clients['availability']).stem}")
        if "deadline" in clients:
            parts.append(
                f"deadline {clients['deadline']:g} {clients['speed']}" + ("" if clients.get("partial", True) else " whole")
            )
        if "min_reports" in clients:
            parts.append(f"min_reports {clients['min_reports']}")
        return ", ".join(parts)

    @property
    def cell(self) -> str:
        """Human-readable cell label, e.g. ``kto-redistributed-fedavg``."""
        return f"{self.method}-{self.layout}-{self.aggregator}"

    def steps_for(self, examples: int, num_clients: int) -> int:
        """A client's local steps in a round: ``local_steps``, or (``dynamic``) FedLLM-Bench's count.

        Dynamic: about :data:`DYNAMIC_EPOCHS` passes over the client's ``examples`` over the whole run,
        spread over the rounds it is expected to be sampled in (rounds x clients_per_round /
        num_clients): ceil(3 n / (R m / N) / (batch_size x grad_accum)), at least 1.
        """
        if self.local_steps != DYNAMIC:
            return int(self.local_steps)
        visits = self.rounds * self.clients_per_round / num_clients
        return max(1, math.ceil(DYNAMIC_EPOCHS * examples / visits / (self.batch_size * self.grad_accum)))

    def lr_at(self, round_index: int) -> float:
        """Client learning rate in a round (0-based): cosine-decayed across rounds, as in FedLLM-Bench.

        Round r uses progress r / rounds, so the first round trains at the full rate and the last
        one still trains (it never reaches ``min_learning_rate`` exactly).
        """
        if self.lr_schedule == "constant":
            return self.learning_rate
        progress = round_index / self.rounds
        return self.min_learning_rate + 0.5 * (self.learning_rate - self.min_learning_rate) * (1 + math.cos(math.pi * progress))


SPEC_FIELDS: dict[str, dataclasses.Field] = {f.name: f for f in fields(RunSpec)}
_TABLES = (
    "method_params",
    "layout_params",
    "aggregator_params",
    "data_columns",
    "privacy",
    "codec_params",
    "attack_params",
    "clients",
)
_ADDED_LATER: dict[str, Any] = {
    "privacy": {},
    "codec": "none",
    "codec_params": {},
    "attack": "none",
    "attack_params": {},
    "clients": {},
}


def _coerce(key: str, value: Any, origin: str) -> Any:
    """Check a config value against the spec field's type; tables become sorted item tuples."""
    hint = typing.get_type_hints(RunSpec)[key]
    if key in _TABLES:
        if not isinstance(value, Mapping):
            raise FedbenchError(
                f"{origin}: '{key}' must be a table, got {type(value).__name__}", f"write [{key}] with name = value lines"
            )
        # a list value (DPO's loss_type = ["sigmoid", "sft"]) becomes a tuple, so the spec stays hashable; JSON and
        # the spec's hash read it as the same list
        return tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in value.items()))
    if typing.get_origin(hint) is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
            raise FedbenchError(f"{origin}: '{key}' must be a list of strings, got {value!r}", f'write {key} = ["a", "b"]')
        return tuple(value)
    if key == "local_steps":
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)  # from the command line
        if value == DYNAMIC or (isinstance(value, int) and not isinstance(value, bool)):
            return value
        raise FedbenchError(f"{origin}: 'local_steps' must be an integer or 'dynamic', got {value!r}", "set local_steps = 10")
    expected = hint if isinstance(hint, type) else str
    if key == "gradient_checkpointing" and isinstance(value, bool):
        return "on" if value else "off"  # TOML's true/false read naturally here
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise FedbenchError(
            f"{origin}: '{key}' must be {expected.__name__}, got {type(value).__name__} ({value!r})",
            f"set {key} to a {expected.__name__}",
        )
    return value


def check_keys(values: Mapping[str, Any], origin: str) -> dict[str, Any]:
    """Refuse unknown keys (with a suggestion) and wrong types."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key not in SPEC_FIELDS:
            raise FedbenchError(
                f"{origin}: unknown setting '{key}'.{did_you_mean(key, SPEC_FIELDS)}",
                f"known settings: {', '.join(SPEC_FIELDS)}",
            )
        out[key] = _coerce(key, value, origin)
    return out


def read_toml(path: Path) -> dict[str, Any]:
    """A TOML file, or an error that names the file and the parse problem."""
    if not path.is_file():
        raise FedbenchError(f"config file '{path}' does not exist", "check the path passed to --config")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise FedbenchError(f"{path}: not valid TOML ({err})", "fix the TOML syntax") from err


def resolve_settings(profile: Mapping[str, Any] | None, config_file: Path | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the config layers into checked spec keyword arguments (method/layout/aggregator may be lists)."""
    merged: dict[str, Any] = {}
    if profile:
        merged |= check_keys(profile, "profile")
    if config_file is not None:
        merged |= check_keys(read_toml(config_file), str(config_file))
    merged |= check_keys({k: v for k, v in overrides.items() if v is not None}, "command line")
    return merged


def spec_from_dict(values: Mapping[str, Any]) -> RunSpec:
    """Rebuild a spec saved as JSON (run directories keep one)."""
    return RunSpec(**check_keys(values, "spec.json"))


def parse_seeds(text: str) -> tuple[int, ...]:
    """``--seeds 0,1,2``: distinct non-negative integers, in the order given."""
    rule = "--seeds takes distinct non-negative integers separated by commas, e.g. --seeds 0,1,2"
    seeds: list[int] = []
    for item in (part.strip() for part in text.split(",")):
        if not item.lstrip("-").isdigit():
            raise FedbenchError(f"--seeds: '{item}' is not an integer", rule)
        value = int(item)
        if value < 0:
            raise FedbenchError(f"--seeds: {value} is negative", rule)
        if value in seeds:
            raise FedbenchError(f"--seeds: {value} is given twice", rule)
        seeds.append(value)
    return tuple(seeds)
