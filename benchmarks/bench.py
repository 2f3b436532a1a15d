"""fedbench performance figures on this machine: run ``.venv/bin/python benchmarks/bench.py [--e2e]``.

Not a test: it prints and records figures (benchmarks/results.json, benchmarks/RESULTS.md) and
never asserts a timing. Everything uses the embedded SmolLM2-135M-Instruct and the built-in
demo data, with sizes small enough for a 2-core CPU (about 6 minutes, 9 with ``--e2e``, on the
2-core AMD EPYC of benchmarks/RESULTS.md).

  a. tokens/s of one client's local training in fedbench (``train_client``) vs plain TRL
  b. share of a round's wall time spent outside local training
  c. speed-up of the reference log-prob cache on 5-round KTO and DPO runs
  d. hf generation: batch 16 vs one prompt at a time
  e. end-to-end wall time and peak memory of ``fedbench run`` (the README command with --e2e)
  f. fedbench at its defaults vs the study's loop shape on the current stack (float32, gradient
     checkpointing on, a new trainer per client-round, the reference scored every step), KTO and
     DPO, whole processes; where the time goes inside one step: benchmarks/profile_step.py
  g. model FLOP utilisation of a KTO and a DPO local step at the defaults, against the matmul rate measured
     at the model's width and dtype in the same run

Timings are only meaningful on a quiet machine: on 2 cores, a second busy process slows
PyTorch tens of times (OpenMP threads fight for the cores). The script reports the load and
any other fedbench/pytest process it sees before starting, and the figures it records.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

HERE = Path(__file__).resolve().parent
MODEL = "smollm2-135m-instruct"
TARGETS = {
    "local_ratio": 0.95,
    "outside_share": 0.05,
    "cache_speedup": 1.25,
    "generation_speedup": 4.0,
    "study_speedup": 2.0,
    "round_outside_share": 0.02,
    "mfu": 0.25,
}
# The demo profile (registry.toml) with the brief's small run shape.
DEMO = dict(model=MODEL, data="demo", batch_size=4, grad_accum=1, learning_rate=5e-4, max_length=256, template="chat")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import torch
    import transformers
    import trl

    return {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "trl": trl.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": cpu_model(),
        "cuda": torch.cuda.is_available(),
    }


def busy_neighbours() -> list[str]:
    """Other fedbench/pytest processes: they would distort every figure."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) == os.getpid():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            continue
        if ("pytest" in cmd or "fedbench" in cmd) and "bench.py" not in cmd:
            found.append(f"{proc.name}: {cmd[:120]}")
    return found


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    out = fn()
    return time.perf_counter() - started, out


def plain_lora(spec: Any) -> Any:
    """The spec's LoRA shape as a plain PEFT config, for the baselines written without fedbench."""
    from peft import LoraConfig

    return LoraConfig(
        r=spec.lora_r,
        lora_alpha=spec.lora_alpha,
        lora_dropout=spec.lora_dropout,
        target_modules=list(spec.lora_targets),
        task_type="CAUSAL_LM",
    )


# --- a. local training: fedbench's train_client vs a plain TRL KTOTrainer -------------------------------------------


def bench_local_training(steps: int, reps: int) -> dict[str, Any]:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.trainer_callback import PrinterCallback
    from trl import KTOConfig, KTOTrainer

    from fedbench.harness.federation import build_cell, partition
    from fedbench.harness.interfaces import LocalTrainingArgs
    from fedbench.harness.models import attach_lora, fresh_adapter, load_adapter, load_base, resolve_model
    from fedbench.harness.refcache import ReferenceCache
    from fedbench.harness.registry import load_registry
    from fedbench.harness.spec import RunSpec
    from fedbench.harness.training import to_dataset, train_client

    # float32 on both sides: the like-for-like comparison of the training machinery (precision is figure f's)
    spec = RunSpec(**DEMO, method="kto", layout="redistributed", local_steps=steps, dtype="float32")
    cell = build_cell(spec, load_registry(entry_points=False))
    clients = partition(cell)
    client = "user_04"  # 44 examples: more than the steps x batch size the benchmark trains on
    dataset = to_dataset(cell.method.records(clients[client], spec.template))
    model, tokenizer = load_base(spec.model, spec.dtype)
    peft_model = attach_lora(model, spec.lora)
    initial = fresh_adapter(peft_model, spec.seed)
    out = Path(tempfile.mkdtemp(prefix="fedbench-bench-"))
    args = LocalTrainingArgs(
        output_dir=str(out),
        steps=steps,
        batch_size=spec.batch_size,
        grad_accum=1,
        learning_rate=spec.learning_rate,
        max_length=spec.max_length,
        seed=0,
    )

    def fedbench_run(cache: bool) -> float:
        load_adapter(peft_model, initial)
        reference = ReferenceCache(None, cell.method.ref_columns, {}) if cache else None  # cold: a client's first visit
        return timed(lambda: train_client(cell.method, peft_model, tokenizer, dataset, args, reference=reference))[0]

    def trl_run(bf16: bool = False) -> float:
        # fedbench trains a float32 model in float32; TRL's configs default to bf16 autocast
        # (bf16=None -> True), so the like-for-like baseline sets bf16=False. The default is timed too.
        base = AutoModelForCausalLM.from_pretrained(resolve_model(MODEL), dtype=torch.float32)
        config = KTOConfig(
            output_dir=str(out),
            max_steps=steps,
            per_device_train_batch_size=spec.batch_size,
            gradient_accumulation_steps=1,
            learning_rate=spec.learning_rate,
            lr_scheduler_type="constant",
            warmup_steps=0,
            max_length=spec.max_length,
            logging_steps=1,
            save_strategy="no",
            report_to=[],
            disable_tqdm=True,
            seed=0,
            data_seed=0,
            use_cpu=not torch.cuda.is_available(),
            dataloader_num_workers=0,
            **({} if bf16 else {"bf16": False}),
        )
        lora = plain_lora(spec)

        def go() -> None:
            trainer = KTOTrainer(model=base, args=config, train_dataset=dataset, processing_class=tokenizer, peft_config=lora)
            trainer.remove_callback(PrinterCallback)  # as fedbench does: no per-step prints
            trainer.train()

        return timed(go)[0]

    # Tokens trained on: KTO reads its data in order (sequential sampler), so both train on the first
    # steps x batch rows; counted from TRL's own tokenisation, policy sequences only (not the KL copies).
    probe = cell.method.build_trainer(peft_model, tokenizer, dataset, args, [])
    peft_model.delete_adapter("ref")
    peft_model.set_adapter("default")
    rows = probe.train_dataset
    lengths = [min(spec.max_length, len(r["prompt_ids"]) + len(r["completion_ids"])) for r in rows]
    tokens = sum(lengths[i % len(lengths)] for i in range(steps * spec.batch_size))
    del probe

    fedbench_run(False), trl_run()  # warm-up: first-call costs (imports, allocator) belong to neither
    times: dict[str, list[float]] = {"fedbench": [], "fedbench_cache_cold": [], "trl": [], "trl_default_bf16": []}
    for _ in range(reps):
        times["trl"].append(trl_run())
        times["trl_default_bf16"].append(trl_run(bf16=True))
        times["fedbench"].append(fedbench_run(False))
        times["fedbench_cache_cold"].append(fedbench_run(True))
    shutil.rmtree(out, ignore_errors=True)
    best = {k: min(v) for k, v in times.items()}
    return {
        "client": client,
        "steps": steps,
        "batch_size": spec.batch_size,
        "tokens": tokens,
        "seconds": times,
        "tokens_per_s": {k: tokens / v for k, v in best.items()},
        "median_seconds": {k: statistics.median(v) for k, v in times.items()},
        "ratio": best["trl"] / best["fedbench"],
        "ratio_cache_cold": best["trl"] / best["fedbench_cache_cold"],
        "ratio_vs_trl_default_bf16": best["trl_default_bf16"] / best["fedbench"],
        "note": "build + train of one client's round, float32; best of reps; ratio = fedbench tokens/s / TRL tokens/s",
    }


# --- b + c. round overhead and the reference cache on 5-round runs ----------------------------------------------------


def bench_reference_cache(rounds: int, clients_per_round: int, steps: int, batch_size: int) -> dict[str, Any]:
    from fedbench.harness.registry import load_registry
    from fedbench.harness.study import Study, run_study

    registry = load_registry(entry_points=False)
    root = Path(tempfile.mkdtemp(prefix="fedbench-bench-"))
    out: dict[str, Any] = {
        "rounds": rounds,
        "clients_per_round": clients_per_round,
        "local_steps": steps,
        "batch_size": batch_size,
        "runs": {},
    }
    for method, layout in (("kto", "redistributed"), ("dpo", "original")):
        runs: dict[str, Any] = {}
        # off, cold cache (first run of the cell), warm cache (same cell again: every row read from the file,
        # what a resumed or repeated run gets); off and cold alternate with nothing cached in between.
        for label, cache, folder in (("off", False, "off"), ("cold", True, "on"), ("warm", True, "on")):
            study = Study(
                settings=DEMO
                | {
                    "batch_size": batch_size,
                    "rounds": rounds,
                    "clients_per_round": clients_per_round,
                    "local_steps": steps,
                    "ref_cache": cache,
                },
                method=method,
                layout=layout,
                runs_root=root / f"{method}-{folder}",
                force=True,
                skip_eval=True,
            )
            seconds, result = timed(partial(run_study, study, registry))
            (outcome,) = result.outcomes
            history = outcome.history
            train = sum(h.train_seconds for h in history)
            total = sum(h.round_seconds for h in history)
            cache_file = next((outcome.run_dir / "refcache").glob("*.json"), None) if cache else None
            runs[label] = {
                "seconds": seconds,
                "train_seconds": train,
                "round_seconds": total,
                "outside_share": 1 - train / total,
                "cached_rows": len(json.loads(cache_file.read_text())["rows"]) if cache_file else 0,
                "clients": [list(h.clients) for h in history],
            }
        reference_rows = rounds * clients_per_round * steps * batch_size
        out["runs"][method] = {
            **runs,
            "speedup_cold": runs["off"]["seconds"] / runs["cold"]["seconds"],
            "speedup_warm": runs["off"]["seconds"] / runs["warm"]["seconds"],
            "reference_rows_without_cache": reference_rows,
            "reference_rows_scored_with_cache": runs["cold"]["cached_rows"],
        }
    shutil.rmtree(root, ignore_errors=True)
    return out


# --- d. generation -------------------------------------------------------------------------------------------------


def bench_generation(prompts: int, new_tokens: int) -> dict[str, Any]:
    from fedbench.harness.data import load_pairs
    from fedbench.harness.generation import GenerationSettings, HFGenerator

    questions = [p.prompt for p in load_pairs("demo")[:prompts]]
    temps = [0.0] * len(questions)
    result: dict[str, Any] = {"prompts": len(questions), "max_new_tokens": new_tokens}
    batched = HFGenerator(MODEL, GenerationSettings(max_new_tokens=new_tokens, batch_size=16))
    single = HFGenerator(MODEL, GenerationSettings(max_new_tokens=new_tokens, batch_size=1))
    batched.generate(questions[:2], temps[:2])  # warm-up
    for label, gen in (("batch16", batched), ("one_at_a_time", single)):
        seconds, answers = timed(partial(gen.generate, questions, temps))
        tokens = sum(len(gen.tokenizer(a, add_special_tokens=False)["input_ids"]) for a in answers)
        result[label] = {"seconds": seconds, "answer_tokens": tokens, "answers_per_s": len(questions) / seconds}
    result["speedup"] = result["one_at_a_time"]["seconds"] / result["batch16"]["seconds"]
    return result


# --- e. end to end -------------------------------------------------------------------------------------------------


def bench_end_to_end(full: bool) -> dict[str, Any]:
    out = Path(tempfile.mkdtemp(prefix="fedbench-bench-e2e-"))
    args = ["run", "--profile", "demo", "--method", "kto", "--layout", "redistributed", "--agg", "fedavg", "--out", str(out)]
    if not full:  # the same command cut to one round of one step, without evaluation: start-up, load, train, save
        args += ["--rounds", "1", "--clients-per-round", "1", "--local-steps", "1", "--skip-eval"]
    result = child(fedbench_cli() + args)
    shutil.rmtree(out, ignore_errors=True)
    return {"command": "fedbench " + " ".join(a if a != str(out) else "<tmp>" for a in args), "full": full, **result}


# --- f. fedbench at its defaults vs the study's loop shape on the current stack --------------------------------------

# The issue's workload (156 pairs, 6 clients in the study's measurement; here the demo data as it comes, by user):
# 3 rounds x 2 sampled clients x 5 local steps, batch 4, max length 256, lr 1e-4, FedAvg, nothing held out.
STUDY_SHAPE = dict(
    rounds=3, clients_per_round=2, local_steps=5, batch_size=4, grad_accum=1, learning_rate=1e-4, max_length=256, holdout=0.0
)


def study_style_loop(method: str, out: Path) -> None:
    """The study's loop shape written on the current stack (runs in a child process; writes its timings to ``out``).

    As OpenFedLLM's KTO branch does it: float32, gradient checkpointing on (TRL's default), a new
    trainer per client per round, the reference (the base model: adapter disabled) scored at every
    step, FedAvg of the adapters' state dicts. Same data, clients, sampling and learning rates as
    fedbench's cell, so only the training machinery differs.
    """
    import datasets
    import torch
    from peft import get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.trainer_callback import PrinterCallback
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    from fedbench.harness.federation import build_cell, partition
    from fedbench.harness.models import resolve_model
    from fedbench.harness.registry import load_registry
    from fedbench.harness.rounds import sample_clients
    from fedbench.harness.spec import RunSpec

    spec = RunSpec(**DEMO | STUDY_SHAPE, method=method, layout="original", dtype="float32")
    cell = build_cell(spec, load_registry(entry_points=False))
    clients = partition(cell)
    location = resolve_model(spec.model)
    tokenizer = AutoTokenizer.from_pretrained(location)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    base = AutoModelForCausalLM.from_pretrained(location, dtype=torch.float32)
    lora = plain_lora(spec)
    model = get_peft_model(base, lora)
    global_state = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
    config_cls, trainer_cls = (KTOConfig, KTOTrainer) if method == "kto" else (DPOConfig, DPOTrainer)
    train_seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="fedbench-study-loop-") as tmp:
        for r in range(spec.rounds):
            states = []
            for cid in sample_clients(list(clients), spec.clients_per_round, spec.seed, r):
                started = time.perf_counter()
                set_peft_model_state_dict(model, global_state)
                data = datasets.Dataset.from_list(cell.method.records(clients[cid], spec.template))
                config = config_cls(
                    output_dir=tmp,
                    max_steps=spec.local_steps,
                    per_device_train_batch_size=spec.batch_size,
                    learning_rate=spec.lr_at(r),
                    lr_scheduler_type="constant",
                    max_length=spec.max_length,
                    bf16=False,
                    gradient_checkpointing=True,
                    logging_steps=1,
                    save_strategy="no",
                    report_to=[],
                    disable_tqdm=True,
                    use_cpu=not torch.cuda.is_available(),
                    seed=spec.seed,
                )
                trainer = trainer_cls(model=model, args=config, train_dataset=data, processing_class=tokenizer)
                trainer.remove_callback(PrinterCallback)
                if "ref" in model.peft_config:  # the study's reference is the base model (adapter disabled)
                    model.delete_adapter("ref")
                    model.set_adapter("default")
                trainer.train()
                states.append({k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()})
                train_seconds += time.perf_counter() - started
            global_state = {k: torch.stack([s[k] for s in states]).mean(0) for k in global_state}
    out.write_text(json.dumps({"train_seconds": train_seconds}))


def child(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run a whole process; its wall time, peak RSS and exit status."""
    started = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    code = os.waitstatus_to_exitcode(status)
    return {
        "seconds": time.perf_counter() - started,
        "peak_rss_mib": usage.ru_maxrss / 1024,  # Linux reports KiB
        "exit_status": code,
        "stderr_tail": stderr[-600:] if code else "",
    }


def fedbench_cli() -> list[str]:
    exe = Path(sys.executable).with_name("fedbench")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "fedbench.harness.cli"]


def bench_study_loop(methods: tuple[str, ...] = ("kto", "dpo")) -> dict[str, Any]:
    out: dict[str, Any] = {
        "shape": STUDY_SHAPE,
        "layout": "original",
        "runs": {},
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "load_before": load_average(),
        "neighbours": busy_neighbours(),
    }
    root = Path(tempfile.mkdtemp(prefix="fedbench-bench-study-"))
    config = root / "shape.toml"
    config.write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in STUDY_SHAPE.items()))
    # first-time conversion of the embedded GGUF model, timed apart (every later process reads the safetensors)
    probe = f"from fedbench.harness.models import resolve_model; resolve_model({MODEL!r})"
    out["conversion"] = child([sys.executable, "-c", probe], env=os.environ | {"FEDBENCH_HOME": str(root / "home")})
    for method in methods:
        timings = root / f"{method}-study.json"
        study = child([sys.executable, str(Path(__file__).resolve()), "--study-loop", method, "--child-out", str(timings)])
        study["train_seconds"] = json.loads(timings.read_text())["train_seconds"] if timings.is_file() else None
        runs = root / f"{method}-runs"
        args = ["run", "--config", str(config), "--method", method, "--layout", "original", "--agg", "fedavg", "--skip-eval"]
        fed = child(fedbench_cli() + args + ["--out", str(runs)])
        result = next(runs.glob("*/result.json"), None)
        if result is not None:
            saved = json.loads(result.read_text())
            history = saved["history"]
            fed["train_seconds"] = sum(h["train_seconds"] for h in history)
            fed["round_seconds"] = sum(h["round_seconds"] for h in history)
            fed["outside_share"] = 1 - fed["train_seconds"] / fed["round_seconds"]
            fed["execution"] = saved.get("execution")
        fed["command"] = "fedbench " + " ".join(args) + " --out <tmp>"
        out["runs"][method] = {
            "study_loop": study,
            "fedbench": fed,
            "speedup": study["seconds"] / fed["seconds"],
            "speedup_training": (study["train_seconds"] / fed["train_seconds"]) if fed.get("train_seconds") else None,
            "memory_ratio": fed["peak_rss_mib"] / study["peak_rss_mib"],
        }
    shutil.rmtree(root, ignore_errors=True)
    out["load_after"] = load_average()
    return out


# --- report --------------------------------------------------------------------------------------------------------


# --- g. model FLOP utilisation of a local step ----------------------------------------------------------------------


def bench_mfu(steps: int = 5, batch_size: int = 4, client: str = "user_04") -> dict[str, Any]:
    """KTO and DPO local steps at fedbench's defaults: tokens/s, model FLOPs per step (the forward with gradients, its
    backward, the no-grad forwards apart) and the achieved rate as a share of the matmul rate measured in the same run
    at the model's width and the run's dtype (``profile_step.Flops`` says what is counted).

    Two denominators, both at the model's width: the square product (width x width x width), which is what the MFU
    goal is set against, and the best rate found at that width (2048 rows x width x width), a ceiling the step's
    products (a few hundred rows each) do not reach. This 2-core VM's matmul rate moves by up to a factor of two within
    a minute (40 timings of one product in a row: 0.7-2.4 TFLOP/s), so each rate is the best of the timings taken
    after each method's steps: the MFU is measured against the fastest the machine was during the run."""
    sys.path.insert(0, str(HERE))
    import profile_step

    def rates(width: int, dtype: str) -> tuple[float, float]:
        return profile_step.matmul_rate(width, dtype, rows=width), profile_step.matmul_rate(width, dtype)

    measured, timings = {}, []
    for method in ("kto", "dpo"):
        profile_step.profile(method, "fedbench", 1, batch_size, client)  # warm-up: first-call costs are neither's
        r = measured[method] = profile_step.profile(method, "fedbench", steps, batch_size, client)
        timings.append(rates(r["width"], r["dtype"]))  # one model, so one width and dtype for both
    square, tall = (max(column) for column in zip(*timings))
    runs = {}
    for method, r in measured.items():
        seconds = r["seconds"] - r["phases"]["build"]  # the steps, not the trainer's construction
        f = r["flops"]
        achieved = f["total"] / seconds
        runs[method] = {
            "dtype": r["dtype"],
            "steps": r["steps"],
            "seconds": seconds,
            "tokens_per_s": f.get("forward_grad_tokens", 0.0) / seconds,
            "gflop_per_step": {k: f.get(k, 0.0) / r["steps"] / 1e9 for k in ("forward_grad", "backward", "forward_nograd")},
            "achieved_tflops": achieved / 1e12,
            "matmul_tflops": square / 1e12,
            "mfu": achieved / square,
            "best_matmul_tflops": tall / 1e12,
            "share_of_best": achieved / tall,
        }
    return {"runs": runs, "width": r["width"], "target": TARGETS["mfu"]}


def _best_rate(run: dict[str, Any]) -> str:
    """The share of the best rate at the model's width, for runs recorded since it was measured."""
    if "share_of_best" not in run:
        return ""
    return f"; {run['share_of_best']:.1%} of the {run['best_matmul_tflops']:.2f} TFLOP/s reached with 2048 rows"


def verdict(ok: bool) -> str:
    return "met" if ok else "missed"


def markdown(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    lines = [
        "# fedbench benchmark results",
        "",
        f"Command: `{command}`  ",
        f"Machine: {m['cpus']} CPUs ({m['processor']}), torch {m['torch']} ({m['torch_threads']} threads), "
        f"transformers {m['transformers']}, TRL {m['trl']}, Python {m['python']}, {m['platform']}, CUDA: {m['cuda']}  ",
        f"Load average before / after: {results['load_before']} / {results['load_after']}; "
        f"other fedbench/pytest processes at start: {len(results['neighbours'])}  ",
        f"Date (UTC): {results['date']}, total {results['total_seconds']:.0f} s  ",
        "Figures by when they were last measured (`--only` updates its figures and keeps the rest): "
        + "; ".join(f"{fig}: {when}" for fig, when in sorted(results.get("measured", {}).items())),
        "",
        "| figure | value | target | |",
        "|---|---|---|---|",
    ]
    if "local_training" in results:
        a = results["local_training"]
        lines.append(
            f"| a. local training tokens/s, fedbench / plain TRL KTOTrainer ({a['steps']} steps, batch {a['batch_size']}) "
            f"| {a['ratio']:.3f} ({a['tokens_per_s']['fedbench']:.0f} vs {a['tokens_per_s']['trl']:.0f} tok/s) "
            f"| >= {TARGETS['local_ratio']} | {verdict(a['ratio'] >= TARGETS['local_ratio'])} |"
        )
        lines.append(
            f"| a'. same, fedbench with a cold reference cache (a client's first visit) | {a['ratio_cache_cold']:.3f} | | |"
        )
        lines.append(
            f"| a''. fedbench (float32) / plain TRL with its default bf16 autocast | {a['ratio_vs_trl_default_bf16']:.3f} | | |"
        )
    if "reference_cache" in results:
        c = results["reference_cache"]
        shape = f"{c['rounds']} rounds x {c['clients_per_round']} clients x {c['local_steps']} steps x batch {c['batch_size']}"
        for method, r in c["runs"].items():
            share = r["cold"]["outside_share"]
            lines.append(
                f"| b. {method}: share of round time outside local training (cache on) | {share:.1%} "
                f"| <= {TARGETS['outside_share']:.0%} | {verdict(share <= TARGETS['outside_share'])} |"
            )
        for method, r in c["runs"].items():
            lines.append(
                f"| c. {method}: reference cache speed-up, {shape}, cold cache "
                f"({r['off']['seconds']:.0f} s -> {r['cold']['seconds']:.0f} s; reference rows "
                f"{r['reference_rows_without_cache']} -> {r['reference_rows_scored_with_cache']}) "
                f"| {r['speedup_cold']:.2f}x | >= {TARGETS['cache_speedup']}x "
                f"| {verdict(r['speedup_cold'] >= TARGETS['cache_speedup'])} |"
            )
            lines.append(
                f"| c'. {method}: same run again, cache read from the run directory (resume/rerun) "
                f"({r['warm']['seconds']:.0f} s) | {r['speedup_warm']:.2f}x | | |"
            )
    if "generation" in results:
        g = results["generation"]
        lines.append(
            f"| d. hf generation, batch 16 vs one at a time ({g['prompts']} prompts, {g['max_new_tokens']} new tokens) "
            f"| {g['speedup']:.2f}x | >= {TARGETS['generation_speedup']}x "
            f"| {verdict(g['speedup'] >= TARGETS['generation_speedup'])} |"
        )
    if "end_to_end" in results:
        e = results["end_to_end"]
        lines.append(
            f"| e. `{e['command']}` | {e['seconds']:.0f} s, peak RSS {e['peak_rss_mib']:.0f} MiB (exit {e['exit_status']}) | | |"
        )
    if "study_loop" in results:
        f = results["study_loop"]
        conv = f["conversion"]
        shape = f["shape"]
        what = (
            f"{shape['rounds']} rounds x {shape['clients_per_round']} clients x {shape['local_steps']} steps, "
            f"batch {shape['batch_size']}, max length {shape['max_length']}, lr {shape['learning_rate']}"
        )
        lines.append(
            f"| f. `.venv/bin/python benchmarks/bench.py --only f`, {f.get('date', '?')} UTC, load average before / after "
            f"{f.get('load_before')} / "
            f"{f.get('load_after')}, other fedbench/pytest processes {len(f.get('neighbours', []))} | | | |"
        )
        for method, r in f["runs"].items():
            fed, study = r["fedbench"], r["study_loop"]
            ex = fed.get("execution") or {}
            lines.append(
                f"| f. {method}: whole process, study-style loop / fedbench at defaults ({what}; "
                f"{study['seconds']:.0f} s vs {fed['seconds']:.0f} s; fedbench ran {ex.get('dtype', '?')}, "
                f"checkpointing {'on' if ex.get('gradient_checkpointing') else 'off'}) "
                f"| {r['speedup']:.2f}x | >= {TARGETS['study_speedup']}x | {verdict(r['speedup'] >= TARGETS['study_speedup'])} |"
            )
            if r["speedup_training"]:
                lines.append(
                    f"| f'. {method}: local training alone ({study['train_seconds']:.0f} s vs {fed['train_seconds']:.0f} s) "
                    f"| {r['speedup_training']:.2f}x | | |"
                )
            lines.append(
                f"| f. {method}: peak RSS, fedbench / study-style loop ({fed['peak_rss_mib']:.0f} vs "
                f"{study['peak_rss_mib']:.0f} MiB) | {r['memory_ratio']:.2f} | <= 1.0 | {verdict(r['memory_ratio'] <= 1.0)} |"
            )
            if "outside_share" in fed:
                lines.append(
                    f"| f. {method}: share of fedbench's round time outside local training | {fed['outside_share']:.2%} "
                    f"| <= {TARGETS['round_outside_share']:.0%} "
                    f"| {verdict(fed['outside_share'] <= TARGETS['round_outside_share'])} |"
                )
        lines.append(
            f"| f. first-time conversion of the embedded GGUF model (once per machine, excluded above) "
            f"| {conv['seconds']:.0f} s | | |"
        )
    if "mfu" in results:
        for method, r in results["mfu"]["runs"].items():
            per_step = r["gflop_per_step"]
            lines.append(
                f"| g. {method}: model FLOP utilisation of a local step ({r['dtype']}, {r['tokens_per_s']:.0f} tokens/s; "
                f"GFLOP per step: forward {per_step['forward_grad']:.0f}, backward {per_step['backward']:.0f}, no-grad "
                f"{per_step['forward_nograd']:.0f}; {r['achieved_tflops']:.3f} TFLOP/s against the square width-"
                f"{results['mfu']['width']} product's {r['matmul_tflops']:.2f}{_best_rate(r)}) "
                f"| {r['mfu']:.1%} | >= {TARGETS['mfu']:.0%} | {verdict(r['mfu'] >= TARGETS['mfu'])} |"
            )
    if "mfu" in results:
        lines += [
            "",
            "Notes on g: the model FLOPs are those of every row's real tokens, as a padded batch would compute "
            "them, and of the vocabulary head at the labelled positions. Prefix sharing (`harness/prefix.py`) "
            "computes a prefix that rows share once, so the step executes fewer FLOPs than it is credited with: the "
            "figure is the rate of useful work, not of the matrix units. The MFU goal is set against the square "
            "product at the model's width in the run's dtype (the issue measured 1.2 TFLOP/s for it in bfloat16 at "
            "576). That product is not the fastest at this width: this CPU runs a 2048-row product about twice as "
            "fast and a 256-row one (the size of a step's products) about 1.5 times as fast, so the share of the "
            "2048-row rate is shown beside it as the stricter figure.",
        ]
    if "reference_cache" in results:
        lines += [
            "",
            "Notes on c: the cache skips the reference forward only for a row met again. A cold run still "
            "scores every distinct row once (as many forwards as TRL spends on it), so its speed-up is bounded by "
            "how often rows recur: here the 5 sampled rounds revisit few rows (reference rows above). The warm "
            "figure, with every row already in the run directory, is the per-step gain once rows recur (long runs, "
            "clients with fewer rows than steps x batch, resumed or repeated runs).",
        ]
    lines += ["", "Raw figures: benchmarks/results.json. Timings are wall-clock on this machine only.", ""]
    return "\n".join(lines + sections(HERE))


def sections(folder: Path) -> list[str]:
    """The sections of the sibling scripts, from the figures they left in ``folder``: profile_step.py's phase
    split (profile.json), peer_compare.py's runs against the study's own loop (peer.json) and scale.py's
    747-client run (scale.json)."""
    sys.path.insert(0, str(HERE))
    import peer_compare
    import profile_step
    import scale

    out: list[str] = []
    if (folder / "profile.json").is_file():
        rows = json.loads((folder / "profile.json").read_text())
        out += [
            "## Where one client's local training spends its time",
            "",
            "Command: `.venv/bin/python benchmarks/profile_step.py --json benchmarks/profile.json` (one client of the demo "
            f"data, {rows[0]['steps']} steps at batch {rows[0]['batch_size']}; exclusive wall time per phase; `study`: the "
            "study's loop shape on the current stack, `fedbench`: its defaults, cold reference cache)",
            "",
            profile_step.table(rows),
            "",
        ]
    if (folder / "peer.json").is_file():
        out += [peer_compare.markdown(json.loads((folder / "peer.json").read_text())), ""]
    if (folder / "scale.json").is_file():
        out += [scale.markdown(json.loads((folder / "scale.json").read_text())), ""]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--e2e", action="store_true", help="run the README's full demo command for (e) (train + evaluate: minutes more)"
    )
    parser.add_argument("--only", default="abcdefg", help="subset of the figures to measure, e.g. 'cd'")
    parser.add_argument("--study-loop", choices=("kto", "dpo"), help=argparse.SUPPRESS)  # child process of figure f
    parser.add_argument("--child-out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, default=HERE, help="folder for results.json and RESULTS.md")
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md from the folder's results.json")
    opts = parser.parse_args(argv)
    if opts.study_loop:
        import logging
        import warnings

        logging.getLogger("trl").setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")
        study_style_loop(opts.study_loop, opts.child_out)
        return 0
    if opts.render:
        results = json.loads((opts.out / "results.json").read_text())
        (opts.out / "RESULTS.md").write_text(markdown(results, results["command"]))
        return 0

    neighbours = busy_neighbours()
    load_before = load_average()
    print(f"load average {load_before}; other fedbench/pytest processes: {len(neighbours)}")
    for n in neighbours:
        print("  WARNING, timings will be distorted by:", n)

    import logging
    import warnings

    import transformers

    transformers.logging.set_verbosity_error()
    logging.getLogger("trl").setLevel(logging.ERROR)  # KTO's per-client class-balance advice, once per trainer
    warnings.filterwarnings("ignore")
    # a subset of the figures updates the folder's earlier results instead of replacing them
    earlier = opts.out / "results.json"
    results: dict[str, Any] = json.loads(earlier.read_text()) if opts.only != "abcdefg" and earlier.is_file() else {}
    results |= {
        "machine": machine(),
        "neighbours": neighbours,
        "load_before": load_before,
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "targets": TARGETS,
    }
    started = time.perf_counter()
    if "a" in opts.only:
        results["local_training"] = bench_local_training(steps=2, reps=2)
        print("a.", json.dumps({k: results["local_training"][k] for k in ("ratio", "ratio_cache_cold", "tokens_per_s")}))
    if "b" in opts.only or "c" in opts.only:
        results["reference_cache"] = bench_reference_cache(rounds=5, clients_per_round=2, steps=2, batch_size=2)
        for method, r in results["reference_cache"]["runs"].items():
            print(
                f"b/c. {method}: outside share {r['cold']['outside_share']:.1%}, speed-up cold {r['speedup_cold']:.2f}x, "
                f"warm {r['speedup_warm']:.2f}x"
            )
    if "d" in opts.only:
        results["generation"] = bench_generation(prompts=16, new_tokens=32)
        print(f"d. generation speed-up {results['generation']['speedup']:.2f}x")
    if "e" in opts.only:
        results["end_to_end"] = bench_end_to_end(full=opts.e2e)
        print(
            f"e. {results['end_to_end']['command']}: {results['end_to_end']['seconds']:.0f} s, "
            f"peak RSS {results['end_to_end']['peak_rss_mib']:.0f} MiB"
        )
    if "f" in opts.only:
        results["study_loop"] = bench_study_loop()
        for method, r in results["study_loop"]["runs"].items():
            print(f"f. {method}: fedbench {r['speedup']:.2f}x faster than the study-style loop, memory {r['memory_ratio']:.2f}x")
    if "g" in opts.only:
        results["mfu"] = bench_mfu()
        for method, r in results["mfu"]["runs"].items():
            print(
                f"g. {method}: {r['tokens_per_s']:.0f} tokens/s, MFU {r['mfu']:.1%} of the square product's "
                f"{r['matmul_tflops']:.2f} TFLOP/s ({r['share_of_best']:.1%} of {r['best_matmul_tflops']:.2f} with 2048 rows)"
            )
    results["total_seconds"] = time.perf_counter() - started
    results["load_after"] = load_average()
    command = " ".join([".venv/bin/python benchmarks/bench.py", *(argv if argv is not None else sys.argv[1:])])
    results["command"] = command
    where = f"{results['date']} on {results['machine']['processor']}"
    results.setdefault("measured", {}).update(dict.fromkeys(opts.only, f"{where} (`{command}`)"))
    opts.out.mkdir(parents=True, exist_ok=True)
    (opts.out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    (opts.out / "RESULTS.md").write_text(markdown(results, command))
    print(f"wrote {opts.out / 'results.json'} and {opts.out / 'RESULTS.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
