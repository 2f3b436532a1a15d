"""The machine's fast path: which precision and whether gradient checkpointing, when a run says ``auto``.

Both choices change speed and memory, not the experiment: bfloat16 is chosen only where the
hardware computes it natively (elsewhere it is emulated and slower than float32), and gradient
checkpointing only where a step's activations would not fit comfortably in memory (it recomputes
each layer's forward during backward, about a third more compute, to save memory a small model
with a LoRA adapter does not need). Every choice comes with the reason, which the run prints and
records in ``result.json``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import torch

DTYPES = ("auto", "float32", "bfloat16")
SWITCHES = ("auto", "on", "off")
ACTIVATION_SHARE = 0.5
"""Gradient checkpointing turns on (``auto``) when a step's activations would take more than this share of free memory."""


@dataclass(frozen=True)
class Choice:
    """A resolved setting and why it was chosen."""

    value: Any
    reason: str


@functools.cache
def auto_dtype() -> Choice:
    """bfloat16 where the GPU or CPU computes it natively, float32 elsewhere."""
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return Choice("bfloat16", f"{name} computes bfloat16 natively")
        return Choice("float32", f"{name} has no native bfloat16")
    for probe, feature in (("_is_amx_tile_supported", "AMX"), ("_is_avx512_bf16_supported", "AVX512-BF16")):
        check = getattr(torch.cpu, probe, None)  # private probes of torch.cpu; absent ones count as unsupported
        if check is not None and check():
            return Choice("bfloat16", f"the CPU has {feature}")
    return Choice("float32", "the CPU has neither AVX512-BF16 nor AMX, so bfloat16 would be emulated")


def resolve_dtype(value: str) -> str:
    """A spec's ``dtype``: ``auto`` becomes this machine's choice, the others stay."""
    return auto_dtype().value if value == "auto" else value


def free_memory() -> int:
    """Bytes free where training runs: the GPU's free memory, else the host's available memory."""
    if torch.cuda.is_available():
        return int(torch.cuda.mem_get_info()[0])
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


def activation_bytes(config: Any, sequences: int, length: int, dtype: str) -> int:
    """Activations a decoder stores for backward in one step (Korthikanti et al. 2022, eq. 2, no parallelism).

    Per layer s*b*h*(34 + 5*a*s/h) bytes in 16-bit training, twice that in float32; ``sequences``
    is the micro-batch's number of sequences trained with gradients (DPO's chosen and rejected
    responses are two per row).
    """
    hidden = int(config.hidden_size)
    heads = int(config.num_attention_heads)
    layers = int(config.num_hidden_layers)
    per_layer = length * sequences * hidden * (34 + 5 * heads * length / hidden)
    return int(per_layer * layers * (2 if dtype == "float32" else 1))


def gradient_checkpointing(setting: str, config: Any, sequences: int, length: int, dtype: str) -> Choice:
    """Checkpointing on or off: as set, or (``auto``) on only when activations would crowd the free memory."""
    if setting != "auto":
        return Choice(setting == "on", "as set")
    need, free = activation_bytes(config, sequences, length, dtype), free_memory()
    gib = 2**30
    on = need > ACTIVATION_SHARE * free
    verdict = "more" if on else "less"
    return Choice(on, f"auto: a step's activations, {need / gib:.1f} GiB, are {verdict} than half of {free / gib:.1f} GiB free")


def execution_note(dtype: str, checkpointing: Choice) -> dict[str, Any]:
    """What ``result.json`` records about how a cell ran on this machine (``execution``; not part of the spec's hash)."""
    fast = auto_dtype()
    return {
        "dtype": dtype,
        "dtype_reason": "this machine's fast path: " + fast.reason if dtype == fast.value else "as set",
        "gradient_checkpointing": checkpointing.value,
        "gradient_checkpointing_reason": checkpointing.reason,
        "device": "cuda" if torch.cuda.is_available() else "cpu",
    }


def describe_execution(note: dict[str, Any]) -> str:
    """One line for the log: the device, precision and gradient checkpointing a cell trains with, and why."""
    switch = "on" if note["gradient_checkpointing"] else "off"
    return (
        f"{note['device']}, {note['dtype']} ({note['dtype_reason']}); "
        f"gradient checkpointing {switch} ({note['gradient_checkpointing_reason']})"
    )


def start_memory_watch() -> None:
    """Begin a cell's GPU peak from zero (the process's RSS peak cannot be reset: see :func:`peak_memory`)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process so far (MiB; cells trained earlier in it included) and, on a GPU, the peak
    allocated by torch since :func:`start_memory_watch`: what ``result.json`` records as the run's memory."""
    import resource

    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # Linux reports KiB
    if torch.cuda.is_available():
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def release_freed_memory() -> bool:
    """Hand the C heap's free pages back to the operating system (glibc's ``malloc_trim``); False where there is none.

    A client-round allocates and frees several hundred MiB of activations and TRL bookkeeping; glibc keeps
    the freed pages in its arenas, so without this a process's resident memory after training stayed
    near its training peak (about 2.5 GB after the demo's three cells, 0.9 GB of it free pages), and
    evaluation's float32 copy of the model came on top of that.
    """
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


@functools.cache
def _malloc_trim() -> Any:
    """glibc's ``malloc_trim``, looked up once (``find_library`` runs a subprocess); None with another C library."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
