"""Run directories: the spec, per-round checkpoints and the final adapter, all written atomically.

A checkpoint is a directory written under a temporary name, fsynced and renamed into place,
so a crash mid-write leaves either the previous checkpoint or the new one, never half of one.
Tensors go to safetensors, everything else to JSON; nothing is pickled.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from filelock import FileLock, Timeout
from safetensors.torch import load_file, save_file

from fedbench.harness.errors import CellBusy, FedbenchError
from fedbench.harness.interfaces import ClientStates, Params
from fedbench.harness.spec import RunSpec, spec_from_dict

if TYPE_CHECKING:
    from peft import PeftModel

ROUND_PREFIX = "round_"
KEEP_ROUNDS = 2
CLIENT_STATE_DIR = "client_state"
CODEC_STATE_DIR = "codec_state"
"""A codec's per-client memory (top-k's error-feedback residual), kept like an aggregator's client state."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _usual_mode() -> int:
    """The mode ``open()`` gives a new file: 0o666 less the process's umask (read without changing it for good)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_text(path: Path, text: str) -> None:
    """Replace a file's content in one step: temp file, fsync, rename.

    The file gets the mode a plain write would give it (the umask's, e.g. 0644), not the temp file's 0600: a
    report or a results file is made to be read by others."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, _usual_mode())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, data: Any) -> None:
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True) + "\n")


def _contiguous(params: Params) -> Params:
    return {k: v.detach().contiguous().cpu() for k, v in params.items()}


@dataclass(frozen=True)
class RoundRecord:
    """One round's entry in a cell's history: what every engine appends after aggregating (``close_round``).

    Stored as a JSON object with these field names as keys, in this order, one line per round in the run's
    ``history.jsonl`` (checkpoints before it held the whole list in ``round.json``) and in ``result.json``;
    :meth:`to_dict` / :meth:`from_dict` are that form.
    """

    round: int
    """1-based round number."""
    lr: float
    """The clients' learning rate in this round."""
    clients: tuple[str, ...]
    """The sampled clients, in sampling order (failed ones included)."""
    loss: float | None
    """Mean training loss of the accepted updates with a finite loss; None when there is none."""
    client_loss: Mapping[str, float]
    """Each client that sent an update -> its training loss."""
    rejected: Mapping[str, str]
    """Each rejected or failed client -> why."""
    bytes_down: int
    """Adapter bytes sent to the sampled clients."""
    bytes_up: int
    """Bytes the clients sent back (adapter and extras, e.g. control variates)."""
    train_seconds: float
    """Sum of the clients' local training time."""
    round_seconds: float
    """Wall time of the whole round, aggregation and checkpoint included."""
    client_settings: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Each client -> what it trained with where that varies per client and round: ``steps`` under dynamic local
    steps, a method's local settings (KTO's balanced ``desirable_weight``). Empty when nothing varies."""
    privacy: Mapping[str, float] = field(default_factory=dict)
    """Under client-level DP (harness/privacy.py): ``epsilon`` spent after this round (at the run's delta),
    ``noise_multiplier``, ``clipped`` (updates whose norm exceeded the clip) and ``median_norm``. Empty without DP."""
    skipped: str = ""
    """Why the round left the global adapter unchanged (fewer reports than ``clients.min_reports``, or than the
    aggregator's guarantee needs); empty when it aggregated."""
    absent: Mapping[str, str] = field(default_factory=dict)
    """Each sampled client that did not report under the run's ``[clients]`` plan -> why (dropped out, offline,
    missed the deadline); empty when all reported."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the keys of the untyped history entries of earlier versions, same order)."""
        out = dataclasses.asdict(self)
        out["clients"] = list(self.clients)
        for optional in ("client_settings", "privacy", "skipped", "absent"):
            if not out[optional]:
                del out[optional]  # absent when unused: histories of earlier versions rewrite byte for byte
        return out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RoundRecord:
        """A record read back from ``history.jsonl``, an older ``round.json`` or ``result.json``."""
        return cls(
            round=int(values["round"]),
            lr=values["lr"],
            clients=tuple(values["clients"]),
            loss=values["loss"],
            client_loss=dict(values["client_loss"]),
            rejected=dict(values["rejected"]),
            bytes_down=values["bytes_down"],
            bytes_up=values["bytes_up"],
            train_seconds=values["train_seconds"],
            round_seconds=values["round_seconds"],
            client_settings={k: dict(v) for k, v in values.get("client_settings", {}).items()},
            privacy=dict(values.get("privacy", {})),
            skipped=values.get("skipped", ""),
            absent=dict(values.get("absent", {})),
        )


def as_records(history: Sequence[RoundRecord | Mapping[str, Any]]) -> list[RoundRecord]:
    """A history as records, whether its entries are records already or their JSON form."""
    return [h if isinstance(h, RoundRecord) else RoundRecord.from_dict(h) for h in history]


@dataclass(frozen=True)
class RunResult:
    """What a finished cell's ``result.json`` holds; written by :meth:`RunDir.finish`, read by :meth:`RunDir.result`.

    Every key of the file has a field here; a key this version does not know is kept in :attr:`others`, so a
    rewrite loses nothing. Files written before the fields were typed read back the same.
    """

    spec: RunSpec
    engine: str
    """The engine that finished the cell ('local', 'flower' or 'flower-secagg'): recorded, not part of the spec's hash."""
    history: list[RoundRecord]
    hash: str = ""
    """The spec's hash as written (default: ``spec.hash``)."""
    rounds: int = 0
    """Rounds trained (default: ``spec.rounds``)."""
    attempt: str | None = None
    """The Flower launch that wrote the result (its launcher checks it is its own); None for the local engine."""
    execution: Mapping[str, Any] | None = None
    """How the local engine ran on its machine: device, precision and gradient checkpointing, each with its reason
    (``hardware.execution_note``)."""
    memory: Mapping[str, float] | None = None
    """The local engine's peak memory in MiB (``hardware.peak_memory``)."""
    local_only: Mapping[str, Any] | None = None
    """A local-only baseline's ending (harness/baselines.py): clients trained, clients never sampled, and the client
    whose adapter answers the generation benchmarks."""
    secure_aggregation: Mapping[str, Any] | None = None
    """The secure-aggregation protocol and its clipping range (harness/flower/secure.py)."""
    others: Mapping[str, Any] = field(default_factory=dict)
    """Keys of the file this version does not know, kept so a rewrite loses nothing."""

    def __post_init__(self) -> None:
        if not self.hash:
            object.__setattr__(self, "hash", self.spec.hash)
        if not self.rounds:
            object.__setattr__(self, "rounds", self.spec.rounds)

    @property
    def traffic(self) -> tuple[int, int]:
        """Bytes sent down to and up from the clients over all rounds."""
        return sum(h.bytes_down for h in self.history), sum(h.bytes_up for h in self.history)

    @property
    def privacy(self) -> Mapping[str, float]:
        """What the whole run spent under client-level DP: its last round's record that has one (a round with no
        update accepted records none); empty without DP."""
        spent = [h.privacy for h in self.history if h.privacy]
        return dict(spent[-1]) if spent else {}

    @property
    def extra(self) -> dict[str, Any]:
        """The file's keys beyond spec, hash, rounds, engine, history and attempt, as one mapping: the form readers
        written before these keys had fields read them in."""
        optional = {name: getattr(self, name) for name in _OPTIONAL_KEYS} | {"privacy": self.privacy}
        return dict(self.others) | {k: dict(v) for k, v in optional.items() if v}

    def to_dict(self) -> dict[str, Any]:
        out = {
            "spec": self.spec.to_dict(),
            "hash": self.hash,
            "rounds": self.rounds,
            "engine": self.engine,
            "history": [h.to_dict() for h in self.history],
        }
        if self.attempt is not None:
            out["attempt"] = self.attempt
        optional = {name: getattr(self, name) for name in _OPTIONAL_KEYS} | {"privacy": self.privacy}
        return dict(self.others) | {k: dict(v) for k, v in optional.items() if v} | out

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RunResult:
        known = {"spec", "hash", "rounds", "engine", "history", "attempt", "privacy", *_OPTIONAL_KEYS}
        return cls(
            spec=spec_from_dict(values["spec"]),
            engine=str(values.get("engine", "local")),
            history=as_records(values["history"]),
            hash=str(values.get("hash", "")),
            rounds=int(values.get("rounds", 0)),
            attempt=values.get("attempt"),
            **{name: values.get(name) for name in _OPTIONAL_KEYS},
            others={k: v for k, v in values.items() if k not in known},
        )


_OPTIONAL_KEYS = ("execution", "memory", "local_only", "secure_aggregation")
""":class:`RunResult`'s fields that an engine sets or not, written only when set (``privacy`` is the history's)."""


@dataclass(frozen=True)
class Checkpoint:
    round: int
    adapter: Params
    server_state: Params
    history: list[RoundRecord]


RESULT_FILE = "result.json"
HISTORY_FILE = "history.jsonl"
"""The rounds' history, one JSON line per round, appended as rounds close (a checkpoint names how many lines are its)."""
FAILED_FILE = "failed.json"
LOCK_FILE = ".lock"
OWNER_FILE = ".owner.json"


class ClientStateStore(ClientStates):
    """Per-client aggregator state in a run directory: ``client_state/<client>/<round>.safetensors``.

    A client's file is written only in a round that changes its state, so a round writes as many
    files as it had clients and memory holds none of them between reads. A checkpoint of round R
    refers to each client's newest file numbered R or lower; files of a round that crashed before
    its checkpoint are discarded on resume (:meth:`discard_after`), so the resumed run reads exactly
    what the uninterrupted one read. Once a round's checkpoint is on disk (:meth:`checkpointed`),
    the clients it wrote keep only that newest file: one file per client between rounds.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.round = 0
        """Reads see files up to this round; writes belong to it (set by the harness: :meth:`at_round`)."""
        self._known: set[str] | None = None  # client ids with a file, listed once, then kept up to date
        self._written: set[str] = set()  # clients written since the last checkpoint

    def at_round(self, round_number: int) -> None:
        self.round = round_number

    def _dir(self, client_id: str) -> Path:
        return self.path / quote(client_id, safe="")

    def _files(self, client_id: str) -> list[tuple[int, Path]]:
        folder = self._dir(client_id)
        if not folder.is_dir():
            return []
        found = [(int(f.stem), f) for f in folder.glob("*.safetensors") if f.stem.isdigit()]
        return sorted(found)

    def get(self, client_id: str) -> Params | None:
        visible = [f for r, f in self._files(client_id) if r <= self.round]
        return load_file(visible[-1]) if visible else None

    def put(self, client_id: str, state: Params) -> None:
        folder = self._dir(client_id)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"{self.round:05d}.safetensors"
        tmp = folder / f".tmp-{target.name}"
        save_file(_contiguous(state), tmp)
        os.replace(tmp, target)
        self._written.add(client_id)
        self._listing().add(client_id)

    def checkpointed(self) -> None:
        for client_id in self._written:
            for _, old in self._files(client_id)[:-1]:
                old.unlink(missing_ok=True)
        self._written.clear()

    def clients(self) -> set[str]:
        """Clients with a file (the directory is listed once per store, not every round)."""
        return set(self._listing())

    def _listing(self) -> set[str]:
        if self._known is None:
            folders = self.path.iterdir() if self.path.is_dir() else ()
            self._known = {unquote(d.name) for d in folders if d.is_dir() and any(d.glob("*.safetensors"))}
        return self._known

    def discard_after(self, round_number: int) -> None:
        """Remove files of rounds after ``round_number`` (a crashed round's, or all of them for a fresh start)."""
        if not self.path.is_dir():
            return
        for folder in self.path.iterdir():
            for f in folder.glob("*.safetensors"):
                if not f.stem.isdigit() or int(f.stem) > round_number:
                    f.unlink(missing_ok=True)
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        self.round = round_number
        self._known = None


class RunDir:
    """One cell's directory, named by the cell and the spec's hash.

    The only reader and writer of its files: ``spec.json``, the round checkpoints, ``result.json``
    (:class:`RunResult`) and ``failed.json``.
    """

    def __init__(self, root: Path, spec: RunSpec) -> None:
        self._spec: RunSpec | None = spec
        self._locate(Path(root) / f"{spec.cell}-{spec.hash}")

    @classmethod
    def at(cls, path: Path) -> RunDir:
        """An existing run directory by its path (e.g. one passed to ``fedbench eval``); its spec is read when asked for."""
        run_dir = cls.__new__(cls)
        run_dir._spec = None
        run_dir._locate(Path(path))
        return run_dir

    def _locate(self, path: Path) -> None:
        self.path = path
        self.rounds_dir = self.path / "rounds"
        self.adapter_dir = self.path / "adapter"
        self._line_ends: list[int] | None = None
        """Byte offset of the end of each line of ``history.jsonl``, read once per process, then kept as lines are added."""

    def client_states(self, folder: str = CLIENT_STATE_DIR) -> ClientStateStore:
        """The run's per-client plugin state (SCAFFOLD's c_i; a codec's under ``codec_state``), one file per client
        and round it changed."""
        return ClientStateStore(self.path / folder)

    @property
    def spec(self) -> RunSpec:
        """The cell's spec (for a directory opened with :meth:`at`, read from its ``spec.json``)."""
        if self._spec is None:
            spec_file = self.path / "spec.json"
            if not spec_file.is_file():
                raise FedbenchError(
                    f"{self.path} is not a run directory (it has no spec.json)", "pass a directory that `fedbench run` created"
                )
            self._spec = spec_from_dict(json.loads(spec_file.read_text()))
        return self._spec

    def prepare(self) -> None:
        """Create the directory and record the spec it belongs to."""
        self.rounds_dir.mkdir(parents=True, exist_ok=True)
        spec_file = self.path / "spec.json"
        if not spec_file.exists():
            atomic_write_json(spec_file, self.spec.to_dict())

    @property
    def done(self) -> bool:
        return (self.path / RESULT_FILE).is_file()

    @contextmanager
    def claim(self) -> Iterator[None]:
        """Hold the cell's lock while training it, so a second ``fedbench run`` on the same cell (another
        terminal, another job of a cluster script) cannot rewrite its checkpoints at the same time.

        The lock is an OS file lock (filelock): it dies with the process that holds it, so the lock of a
        crashed or killed run is simply taken over. The holder is named in ``.owner.json``. Raises
        :class:`CellBusy` at once when another process holds it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path / LOCK_FILE)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            raise CellBusy(
                f"{self.path.name} is being trained by another fedbench process ({self.owner() or 'unknown'})",
                "let it finish (`fedbench runs` shows the cell as running), or stop that process and run again",
            ) from None
        try:
            atomic_write_json(self.path / OWNER_FILE, {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()})
            yield
        finally:
            (self.path / OWNER_FILE).unlink(missing_ok=True)
            lock.release()

    def owner(self) -> str | None:
        """``pid N on HOST since HH:MM`` of the process training the cell, or None when no process holds its lock."""
        if not (self.path / LOCK_FILE).exists():
            return None
        probe = FileLock(self.path / LOCK_FILE)
        try:
            probe.acquire(timeout=0)
        except Timeout:
            try:
                who = json.loads((self.path / OWNER_FILE).read_text())
            except (OSError, ValueError):
                return "an unnamed process"
            return f"pid {who['pid']} on {who['host']} since {time.strftime('%H:%M', time.localtime(who['since']))}"
        probe.release()
        return None

    def latest(self) -> Checkpoint | None:
        """The newest complete round's checkpoint; temporaries from a crash are ignored."""
        if not self.rounds_dir.is_dir():
            return None
        complete = sorted(
            p for p in self.rounds_dir.iterdir() if p.name.startswith(ROUND_PREFIX) and (p / "round.json").is_file()
        )
        if not complete:
            return None
        last = complete[-1]
        meta = json.loads((last / "round.json").read_text())
        if "history" in meta:  # written before the history moved to history.jsonl
            history = as_records(meta["history"])
        else:
            with open(self.path / HISTORY_FILE, "rb") as fh:
                history = [RoundRecord.from_dict(json.loads(next(fh))) for _ in range(meta["history_lines"])]
        return Checkpoint(
            round=meta["round"],
            adapter=load_file(last / "adapter.safetensors"),
            server_state=load_file(last / "server.safetensors"),
            history=history,
        )

    def _append_history(self, history: Sequence[RoundRecord]) -> None:
        """Make ``history.jsonl`` hold exactly ``history``: lines past the last of its entries already written (a
        crashed round's) are cut, the new entries appended and synced. Each round adds one line, so the cost of a
        round's history stays flat however many rounds came before (rewriting it whole grew with them)."""
        path = self.path / HISTORY_FILE
        if self._line_ends is None:
            data = path.read_bytes() if path.is_file() else b""
            ends, start = [], 0
            while (cut := data.find(b"\n", start)) != -1:
                ends.append(cut + 1)
                start = cut + 1
            self._line_ends = ends
        kept = min(len(self._line_ends), len(history) - 1)
        with open(path, "ab") as fh:
            fh.truncate(self._line_ends[kept - 1] if kept else 0)
            del self._line_ends[kept:]
            for record in as_records(history)[kept:]:
                fh.write(json.dumps(record.to_dict()).encode() + b"\n")
                self._line_ends.append(fh.tell())
            fh.flush()
            os.fsync(fh.fileno())

    def save_round(self, round_number: int, adapter: Params, server_state: Params, history: Sequence[RoundRecord]) -> Path:
        """Write round ``round_number``'s checkpoint atomically and prune old ones."""
        final = self.rounds_dir / f"{ROUND_PREFIX}{round_number:05d}"
        tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{final.name}-", dir=self.rounds_dir))
        try:
            self._append_history(history)  # before the checkpoint that names its lines
            save_file(_contiguous(adapter), tmp / "adapter.safetensors")
            save_file(_contiguous(server_state), tmp / "server.safetensors")
            (tmp / "round.json").write_text(json.dumps({"round": round_number, "history_lines": len(history)}))
            for f in tmp.iterdir():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            _fsync_dir(self.rounds_dir)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            previous = round_number - 1
            raise FedbenchError(
                f"could not save the checkpoint of round {round_number} in {self.rounds_dir} ({err.strerror or err})."
                + (f" Rounds up to {previous} are intact." if previous else ""),
                "free disk space (or pick another --out) and rerun the same command: it resumes from the last complete round",
            ) from err
        for old in sorted(self.rounds_dir.glob(f"{ROUND_PREFIX}*"))[:-KEEP_ROUNDS]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def finish(self, result: RunResult) -> None:
        """Mark the cell done with its result; a later run skips it."""
        atomic_write_json(self.path / RESULT_FILE, result.to_dict())
        (self.path / FAILED_FILE).unlink(missing_ok=True)

    def result(self) -> RunResult | None:
        """The finished cell's result, or None while it is unfinished."""
        if not self.done:
            return None
        return RunResult.from_dict(json.loads((self.path / RESULT_FILE).read_text()))

    def mark_failed(self, reason: str) -> None:
        """Record why the cell stopped, for `fedbench runs`; its complete rounds stay usable for resume."""
        atomic_write_json(self.path / FAILED_FILE, {"reason": reason})

    def failure(self) -> str | None:
        """Why the cell last stopped (``mark_failed``), or None when no failure is recorded."""
        failed = self.path / FAILED_FILE
        return json.loads(failed.read_text()).get("reason", "") if failed.is_file() else None


@dataclass(frozen=True)
class RunState:
    """What `fedbench runs` shows for one run directory."""

    path: Path
    cell: str
    rounds_done: int
    rounds: int
    status: str
    """'done', 'running' (another process holds its lock), 'interrupted' (resumable), 'failed' or 'empty'."""
    reason: str = ""


def scan_runs(root: Path) -> list[RunState]:
    """The state of every run directory under a runs folder, read from files alone (no model loaded)."""
    states = []
    for path in sorted(p for p in Path(root).iterdir() if (p / "spec.json").is_file()) if Path(root).is_dir() else []:
        spec = json.loads((path / "spec.json").read_text())
        cell = f"{spec['method']}-{spec['layout']}-{spec['aggregator']}"
        rounds_dir = path / "rounds"
        done_rounds = (
            [int(p.name[len(ROUND_PREFIX) :]) for p in rounds_dir.glob(f"{ROUND_PREFIX}*") if (p / "round.json").is_file()]
            if rounds_dir.is_dir()
            else []
        )
        last = max(done_rounds, default=0)
        run_dir = RunDir.at(path)
        if (owner := run_dir.owner()) is not None:
            states.append(RunState(path, cell, last, spec["rounds"], "running", owner))
        elif run_dir.done:
            states.append(RunState(path, cell, spec["rounds"], spec["rounds"], "done"))
        elif (reason := run_dir.failure()) is not None:
            states.append(RunState(path, cell, last, spec["rounds"], "failed", reason))
        else:
            states.append(RunState(path, cell, last, spec["rounds"], "interrupted" if last else "empty"))
    return states


def save_peft_adapter(peft_model: PeftModel, target: Path) -> None:
    """An adapter in PEFT's own format (loadable by PEFT and vLLM), written to a temp dir and renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".adapter-", dir=target.parent))
    peft_model.save_pretrained(str(tmp), safe_serialization=True)
    if target.exists():
        shutil.rmtree(target)
    os.replace(tmp, target)
