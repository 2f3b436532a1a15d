"""fedbench against the study's own training loop, side by side: ``.venv/bin/python benchmarks/peer_compare.py PEER_DIR``.

Not a test: it runs ``../shared/peer/compare.sh`` (the study's OpenFedLLM loop on its 2024 stack, then
fedbench at its defaults, on the same pairs and settings; build PEER_DIR first with that folder's
``setup.sh``) ``--runs`` times, prints each run's whole-process seconds and the ratios study / fedbench,
and appends the runs to ``benchmarks/peer.json``, which ``bench.py`` renders into RESULTS.md beside
earlier runs (each run records the commit it measured). The ratio is the figure: the two loops run one
right after the other, so a machine that slows down for a while slows both.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
COMPARE = HERE.parent.parent / "shared" / "peer" / "compare.sh"
LINE = re.compile(r"^(peer|fedbench) (\S+)(?: (\S+))?\s*(.*?): ([0-9.]+) s \(rc (\d+)\)")


def parse(output: str) -> dict[str, float]:
    """Seconds per run name (``peer main_kto.py``, ``fedbench kto redistributed`` ...) from compare.sh's lines; a
    fedbench run with extra flags keeps them in its name, a failed run is left out."""
    seconds: dict[str, float] = {}
    for line in output.splitlines():
        match = LINE.match(line.strip())
        if match and match.group(6) == "0":
            name = " ".join(part for part in match.group(1, 2, 3, 4) if part)
            seconds[name] = float(match.group(5))
    return seconds


def ratios(seconds: dict[str, float]) -> dict[str, float]:
    """Study loop / fedbench at its defaults, per method (only where both ran)."""
    pairs = {"kto": ("peer main_kto.py", "fedbench kto redistributed"), "dpo": ("peer main_dpo.py", "fedbench dpo original")}
    return {m: seconds[p] / seconds[f] for m, (p, f) in pairs.items() if p in seconds and f in seconds}


def commit() -> str:
    out = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return out.stdout.strip() or "unknown"


def markdown(runs: list[dict[str, Any]]) -> str:
    lines = [
        "## Against the study's own loop",
        "",
        "Command: `.venv/bin/python benchmarks/peer_compare.py PEER_DIR` (`../shared/peer/compare.sh`: OpenFedLLM branch KTO "
        "on transformers 4.41 / TRL 0.8.6 in float32, then fedbench at its defaults; SmolLM2-135M, LoRA r8/a16 on q,v, FedAvg, "
        "3 rounds x 2 of 6 clients x 5 steps, batch 4, length 256; whole processes, one after the other). Goal: >= 2.0x.",
        "",
        "| date (UTC) | fedbench commit | KTO: study / fedbench | DPO: study / fedbench |",
        "|---|---|---|---|",
    ]
    for run in runs:
        s, r = run["seconds"], run["ratios"]
        kto = f"{r['kto']:.2f}x ({s['peer main_kto.py']:.0f} s vs {s['fedbench kto redistributed']:.0f} s)" if "kto" in r else "-"
        dpo = f"{r['dpo']:.2f}x ({s['peer main_dpo.py']:.0f} s vs {s['fedbench dpo original']:.0f} s)" if "dpo" in r else "-"
        lines.append(f"| {run['date']} | {run['commit']} | {kto} | {dpo} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("peer_dir", type=Path, help="the folder setup.sh built")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--fedbench", type=Path, default=Path(sys.executable).with_name("fedbench"))
    parser.add_argument("--json", type=Path, default=HERE / "peer.json", help="runs are appended here")
    opts = parser.parse_args(argv)
    runs = json.loads(opts.json.read_text()) if opts.json.is_file() else []
    for _ in range(opts.runs):
        date = time.strftime("%Y-%m-%d %H:%M", time.gmtime())
        out = subprocess.run(["bash", str(COMPARE), str(opts.fedbench), str(opts.peer_dir)], capture_output=True, text=True)
        print(out.stdout, end="", flush=True)
        seconds = parse(out.stdout)
        runs.append({"date": date, "commit": commit(), "seconds": seconds, "ratios": ratios(seconds)})
        opts.json.write_text(json.dumps(runs, indent=2) + "\n")
    print(markdown(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
