"""The study's real scale in one process: ``.venv/bin/python benchmarks/scale.py`` (smoke: ``--rounds 12 --clients 40``).

Not a test: it prints a markdown table, writes ``<out>/scale.json`` and never asserts a timing.
One cell per aggregator (FedAvg and SCAFFOLD by default) trains through fedbench's own local
engine (``build_cell`` + ``run_federation``) at the shape of FedLLM-Bench's Fed-ChatbotPA study:
747 clients holding about 9,500 preference pairs, 10 clients sampled per round for 200 rounds,
DPO on the ``original`` layout, one local step each. The data are synthetic (a seeded
heavy-tailed draw of client sizes, a few words per text) and the model is fedbench's tiny random
Llama (``build_tiny_model``), both written to a temporary folder, so nothing is downloaded and
what is measured is the harness around training, not the model.

What it reports per aggregator, at three points (rounds 10, 100 and 200, scaled down to a
smaller ``--rounds``), each timing a mean over the five rounds up to the point:

* wall time per round, and the time per client-round spent outside local training
  (``(round_seconds - train_seconds) / clients_per_round``, from the run's own history);
* the process's peak and current resident memory (``VmHWM`` / ``VmRSS``) as the round closes;
* the Python call depth of one forward pass of the shared model (frames between the caller and
  a pre-hook on its last decoder layer) and the number of forward hooks on all its modules:
  wrappers or hooks that pile up per trainer would show here;
* the bytes of the round's checkpoint (``rounds/round_NNNNN``: adapter, server state and
  ``round.json``; the history is appended to ``history.jsonl``, one line per round); the bytes
  the round wrote anywhere in the run directory (files modified
  since the previous round closed: the checkpoint, the reference cache file, per-client state),
  all and tensors (safetensors) alone; the run directory's size by part; the distinct clients seen
  so far; and the run directory's final size;
* total wall time, and whether the cell finished.

Targets (met / missed): per-round time and peak RSS at the last point within 10% of the first;
SCAFFOLD's tensor bytes written per round likewise (its per-client state should cost the round's
clients, not every client seen so far); every cell finished. Both cells run in one process, as in
a study, so the second cell's peak RSS starts at the first one's. ``--render`` only prints the
markdown of an existing scale.json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

HERE = Path(__file__).resolve().parent
CLIENTS = 747
PAIRS = 9_500
"""Fed-ChatbotPA's shape: 747 clients (users) holding about 9,500 preference pairs."""
ROUNDS = 200
CLIENTS_PER_ROUND = 10
POINTS = (0.05, 0.5, 1.0)
"""Where the figures are taken, as shares of the rounds: rounds 10, 100 and 200 of 200."""
WINDOW = 5
"""Rounds averaged for a timing at a point: the point and the four before it."""
FLAT = 1.10
"""A figure stays flat when its value at the last point is at most this times its value at the first."""
SHAPE: dict[str, Any] = dict(
    layout="original", local_steps=1, batch_size=2, max_length=64, lora_r=4, lora_alpha=8, holdout=0.0, dtype="float32"
)
"""The study's run shape, scaled to the tiny model: every cell trains with these settings."""
CHECKPOINT_FILES = ("adapter.safetensors", "server.safetensors", "round.json")
MIB = 1024 * 1024


# --- data -------------------------------------------------------------------------------------------------------------


def client_sizes(clients: int, total: int, seed: int = 0) -> list[int]:
    """Heavy-tailed client sizes summing to ``total``: one pair each, the rest shared by seeded lognormal weights."""
    if total < clients:
        raise ValueError(f"need at least one pair per client: {total} pairs < {clients} clients")
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0.0, 1.5) for _ in range(clients)]
    shares = [(total - clients) * w / sum(weights) for w in weights]
    sizes = [1 + int(s) for s in shares]
    by_remainder = sorted(range(clients), key=lambda c: shares[c] - int(shares[c]), reverse=True)
    for c in by_remainder[: total - sum(sizes)]:
        sizes[c] += 1
    return sizes


def write_pairs(path: Path, sizes: list[int]) -> None:
    """A JSONL preference file (``id, client_id, prompt, chosen, rejected``) with these client sizes."""
    rows: list[dict[str, str]] = []
    for c, size in enumerate(sizes):
        for _ in range(size):
            i = len(rows)
            a, b = i % 97, i // 97
            rows.append(
                {
                    "id": f"p{i}",
                    "client_id": f"user{c:04d}",
                    "prompt": f"What is {a} plus {b}?",
                    "chosen": f"It is {a + b}.",
                    "rejected": "I don't know.",
                }
            )
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


# --- probes -----------------------------------------------------------------------------------------------------------


def memory_mib() -> dict[str, float]:
    """This process's peak (``VmHWM``) and current (``VmRSS``) resident memory, in MiB."""
    fields = {"VmHWM:": "peak_rss_mib", "VmRSS:": "rss_mib"}
    out = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, *values = line.split()
        if name in fields:
            out[fields[name]] = int(values[0]) / 1024  # kB
    return out


def stack_depth() -> int:
    """The caller's depth on the Python stack, in frames."""
    frame: FrameType | None = sys._getframe(1)
    depth = 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1
    return depth


def forward_probe(model: Any, tokenizer: Any) -> dict[str, int]:
    """Python frames between a forward call and the model's last decoder layer, and the forward hooks on every module."""
    import torch

    layer = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")][-1]
    hooks = sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())
    depths: list[int] = []
    handle = layer.register_forward_pre_hook(lambda module, args: depths.append(stack_depth()))
    device = next(model.parameters()).device
    inputs = tokenizer("What is 1 plus 1?", return_tensors="pt").to(device)
    was_training = model.training
    model.train(False)
    try:
        caller = stack_depth()
        with torch.no_grad():
            model(**inputs, use_cache=False)
    finally:
        handle.remove()
        model.train(was_training)
    return {"forward_depth": depths[0] - caller, "forward_hooks": hooks}


def tree_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (0 when it does not exist)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.is_dir() else 0


def file_bytes(folder: Path) -> dict[str, int]:
    """Each file's size in a folder, by name."""
    return {f.name: f.stat().st_size for f in sorted(folder.iterdir()) if f.is_file()}


def parts_bytes(folder: Path) -> dict[str, int]:
    """Bytes under each entry of a folder (``rounds``, ``refcache``, per-client state, ...), by name."""
    return {f.name: tree_bytes(f) if f.is_dir() else f.stat().st_size for f in sorted(folder.iterdir())}


def written_since(folder: Path, since_ns: int) -> dict[str, int]:
    """Bytes of the files under ``folder`` modified since ``since_ns``: all of them, and the tensors (safetensors) alone."""
    stats = [(f.suffix, f.stat()) for f in folder.rglob("*") if f.is_file()]
    fresh = [(suffix, st.st_size) for suffix, st in stats if st.st_mtime_ns >= since_ns]
    return {"all": sum(n for _, n in fresh), "tensors": sum(n for suffix, n in fresh if suffix == ".safetensors")}


def checkpoints(rounds: int) -> list[int]:
    """The rounds the figures are taken at: 10, 100 and 200 for 200 rounds, scaled to fewer (each at least a window in)."""
    return sorted({min(rounds, max(WINDOW, round(rounds * share))) for share in POINTS})


def window_mean(values: list[float], point: int) -> float | None:
    """Mean of the values of rounds ``point - WINDOW + 1`` .. ``point`` (1-based), None when the run stopped before."""
    if len(values) < point:
        return None
    chosen = values[max(0, point - WINDOW) : point]
    return sum(chosen) / len(chosen)


# --- one cell ---------------------------------------------------------------------------------------------------------


def run_cell(
    model_dir: Path, data: Path, runs_root: Path, aggregator: str, method: str, rounds: int, clients_per_round: int
) -> dict[str, Any]:
    """Train one cell through the local engine, sampling the probes as rounds close; its figures."""
    from fedbench.harness.checkpoint import ROUND_PREFIX, RunDir
    from fedbench.harness.federation import RoundEvent, build_cell, run_federation
    from fedbench.harness.models import attach_lora, load_base
    from fedbench.harness.registry import load_registry
    from fedbench.harness.spec import RunSpec

    spec = RunSpec(
        model=str(model_dir),
        data=str(data),
        method=method,
        aggregator=aggregator,
        rounds=rounds,
        clients_per_round=clients_per_round,
        **SHAPE,
    )
    run_dir = RunDir(runs_root, spec)
    points = checkpoints(rounds)
    seen: set[str] = set()
    checkpoint_bytes: list[int] = []
    written: list[dict[str, int]] = []
    at: dict[str, dict[str, Any]] = {}
    started = time.perf_counter()
    last_close = [time.time_ns()]  # files modified after this belong to the round in progress

    def on_event(event: RoundEvent) -> None:
        if event.client is not None:
            seen.add(event.client)
            return
        files = file_bytes(run_dir.rounds_dir / f"{ROUND_PREFIX}{event.round:05d}")
        checkpoint_bytes.append(sum(files.values()))
        written.append(written_since(run_dir.path, last_close[0]))
        if event.round in points:
            model, tokenizer = load_base(spec.model, spec.dtype)
            at[str(event.round)] = {
                **memory_mib(),
                **forward_probe(attach_lora(model, spec.lora), tokenizer),  # the live PEFT wrapper around the shared base
                "checkpoint_files": files,
                "written": written[-1],
                "run_dir_parts": parts_bytes(run_dir.path),
                "clients_seen": len(seen),
            }
        if event.round in points or event.round % max(1, rounds // 10) == 0:
            print(
                f"  {aggregator}: round {event.round}/{rounds}, {time.perf_counter() - started:.0f} s, "
                f"RSS {memory_mib()['rss_mib']:.0f} MiB, checkpoint {checkpoint_bytes[-1]} B, "
                f"written {written[-1]['all']} B, {len(seen)} clients seen",
                flush=True,
            )
        last_close[0] = time.time_ns()

    error = None
    try:
        history = run_federation(build_cell(spec, load_registry(entry_points=False)), runs_root, on_event=on_event).history
    except Exception as err:  # reported as a missed target, and the other cells still run
        error = f"{type(err).__name__}: {err}"
        checkpoint = run_dir.latest()
        history = checkpoint.history if checkpoint is not None else []
    round_seconds = [h.round_seconds for h in history]
    outside = [(h.round_seconds - h.train_seconds) / clients_per_round for h in history]
    for point in points:
        if str(point) in at:
            at[str(point)] |= {"round_seconds": window_mean(round_seconds, point), "outside_seconds": window_mean(outside, point)}
    return {
        "error": error,
        "total_seconds": time.perf_counter() - started,
        "rounds_done": len(history),
        "run_dir_bytes": tree_bytes(run_dir.path),
        "at": at,
        "round_seconds": [round(s, 4) for s in round_seconds],
        "train_seconds": [round(h.train_seconds, 4) for h in history],
        "checkpoint_bytes": checkpoint_bytes,
        "written_bytes": [w["all"] for w in written],
        "written_tensor_bytes": [w["tensors"] for w in written],
    }


# --- verdicts and report ----------------------------------------------------------------------------------------------


def flat(cell: dict[str, Any], points: list[int], value: Callable[[dict[str, Any]], float]) -> bool | None:
    """Whether a figure at the last point is within :data:`FLAT` of the first; None when the run has not both."""
    first, last = (cell["at"].get(str(p)) for p in (points[0], points[-1]))
    if len(points) < 2 or first is None or last is None:
        return None
    return value(last) <= FLAT * value(first)


def targets(aggregator: str, cell: dict[str, Any], points: list[int]) -> dict[str, bool | None]:
    """The cell's targets, met (True), missed (False) or not measurable (None)."""
    out = {
        "round_time_flat": flat(cell, points, lambda a: a["round_seconds"]),
        "peak_rss_flat": flat(cell, points, lambda a: a["peak_rss_mib"]),
        "finished": cell["error"] is None,
    }
    if aggregator == "scaffold":
        out["checkpoint_flat"] = flat(cell, points, lambda a: a["written"]["tensors"])
    return out


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "missed"


def markdown(results: dict[str, Any]) -> str:
    """The "Scale" section of benchmarks/RESULTS.md: command, machine, and every cell's figures at each point."""
    m, shape = results["machine"], results["shape"]
    points = [str(p) for p in results["points"]]
    limit = f"last <= {results['flat']:.2f} x first"
    lines = [
        f"## Scale: {shape['clients']} clients x {shape['rounds']} rounds",
        "",
        f"Command: `{results['command']}`  ",
        f"Machine: {m['cpus']} CPUs ({m['processor']}), torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, TRL {m['trl']}, Python {m['python']}, CUDA: {m['cuda']}  ",
        f"Date (UTC): {results['date']}; load average before / after: {results['load_before']} / {results['load_after']}  ",
        f"Shape: {shape['method']} on the {shape['layout']} layout, {shape['pairs']} synthetic pairs over {shape['clients']} "
        f"clients ({shape['smallest_client']} to {shape['largest_client']} each), {shape['clients_per_round']} clients per "
        f"round, {shape['local_steps']} local step(s) of batch {shape['batch_size']}, max length {shape['max_length']}, "
        f"LoRA r {shape['lora_r']}, {shape['dtype']}, fedbench's tiny random Llama; all cells in one process",
        "",
        "| cell | figure | " + " | ".join(f"round {p}" for p in points) + " | target | |",
        "|---|---|" + "---|" * len(points) + "---|---|",
    ]

    def row(cell: str, figure: str, values: list[str], target: str = "", met: bool | None = None) -> None:
        lines.append(f"| {cell} | {figure} | " + " | ".join(values) + f" | {target} | {verdict(met) if target else ''} |")

    for name, cell in results["cells"].items():
        met = cell["targets"]

        def at(show: Callable[[dict[str, Any]], str], cell: dict[str, Any] = cell) -> list[str]:
            return [show(cell["at"][p]) if p in cell["at"] else "-" for p in points]

        row(name, "wall time per round, s", at(lambda a: f"{a['round_seconds']:.3f}"), limit, met["round_time_flat"])
        row(name, "outside local training, ms per client-round", at(lambda a: f"{1000 * a['outside_seconds']:.1f}"))
        row(
            name,
            "peak RSS (current), MiB",
            at(lambda a: f"{a['peak_rss_mib']:.0f} ({a['rss_mib']:.0f})"),
            limit,
            met["peak_rss_flat"],
        )
        row(name, "forward call depth / forward hooks", at(lambda a: f"{a['forward_depth']} / {a['forward_hooks']}"))
        row(
            name,
            "checkpoint bytes (adapter + server + round.json)",
            at(
                lambda a: "{} ({} + {} + {})".format(
                    sum(a["checkpoint_files"].values()), *(a["checkpoint_files"].get(f, 0) for f in CHECKPOINT_FILES)
                )
            ),
        )
        row(
            name,
            "bytes written in the round: all (tensors)",
            at(lambda a: f"{a['written']['all']} ({a['written']['tensors']})"),
            limit + " (tensors)" if "checkpoint_flat" in met else "",
            met.get("checkpoint_flat"),
        )
        row(
            name,
            "run directory by part, KiB",
            at(lambda a: ", ".join(f"{k} {v / 1024:.0f}" for k, v in a["run_dir_parts"].items() if v)),
        )
        row(name, "distinct clients seen", at(lambda a: str(a["clients_seen"])))
    lines += [
        "",
        "| cell | total wall time | rounds done | run directory at the end | status | target | |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, cell in results["cells"].items():
        status = "finished" if cell["error"] is None else f"failed: {cell['error']}"
        lines.append(
            f"| {name} | {cell['total_seconds']:.0f} s | {cell['rounds_done']} | {cell['run_dir_bytes'] / MIB:.2f} MiB "
            f"| {status} | no failure | {verdict(cell['targets']['finished'])} |"
        )
    lines += [
        "",
        f"Timings are the mean of the {WINDOW} rounds up to each point, from the run's own history (round_seconds, "
        "train_seconds); memory, call depth, hooks and sizes are taken as that round closes (bytes written: files of the "
        "run directory modified during the round). Peak RSS is the process's, "
        "so a later cell's starts at the earlier cells'. Raw figures: benchmarks/scale.json.",
        "",
    ]
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument(
        "--clients",
        type=int,
        default=CLIENTS,
        help=f"clients in the synthetic data (pairs scale with them: {PAIRS} for {CLIENTS})",
    )
    parser.add_argument("--clients-per-round", type=int, default=CLIENTS_PER_ROUND)
    parser.add_argument("--aggregators", default="fedavg,scaffold", help="comma-separated aggregator names, one cell each")
    parser.add_argument("--method", default="dpo")
    parser.add_argument("--out", type=Path, default=HERE, help="folder for scale.json")
    parser.add_argument("--render", action="store_true", help="only print the markdown of the folder's scale.json")
    opts = parser.parse_args(argv)
    if opts.render:
        print(markdown(json.loads((opts.out / "scale.json").read_text())))
        return 0

    from bench import load_average, machine  # benchmarks/bench.py, next to this script

    from fedbench.harness.study import quiet_libraries
    from fedbench.harness.testing import build_tiny_model

    quiet_libraries()
    load_before = load_average()
    aggregators = [a.strip() for a in opts.aggregators.split(",") if a.strip()]
    sizes = client_sizes(opts.clients, max(opts.clients, round(opts.clients * PAIRS / CLIENTS)))
    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python benchmarks/scale.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": machine(),
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_before": load_before,
        "shape": {
            "clients": opts.clients,
            "pairs": sum(sizes),
            "smallest_client": min(sizes),
            "largest_client": max(sizes),
            "rounds": opts.rounds,
            "clients_per_round": opts.clients_per_round,
            "method": opts.method,
            **SHAPE,
        },
        "points": checkpoints(opts.rounds),
        "flat": FLAT,
        "cells": {},
    }
    with tempfile.TemporaryDirectory(prefix="fedbench-scale-") as tmp:
        model_dir = build_tiny_model(Path(tmp) / "model")
        data = Path(tmp) / "pairs.jsonl"
        write_pairs(data, sizes)
        print(f"{sum(sizes)} pairs over {opts.clients} clients (sizes {min(sizes)}-{max(sizes)}); points {results['points']}")
        for aggregator in aggregators:
            cell = run_cell(model_dir, data, Path(tmp) / "runs", aggregator, opts.method, opts.rounds, opts.clients_per_round)
            cell["targets"] = targets(aggregator, cell, results["points"])
            results["cells"][f"{opts.method}-{SHAPE['layout']}-{aggregator}"] = cell
    results["load_after"] = load_average()
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "scale.json").write_text(json.dumps(results, indent=2) + "\n")
    print(markdown(results))
    print(f"wrote {opts.out / 'scale.json'}")
    return 0 if all(c["error"] is None for c in results["cells"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
