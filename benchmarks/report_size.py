"""Size and load time of ``fedbench report`` at the study's full shape: ``.venv/bin/python benchmarks/report_size.py``.

Not a test: it prints a markdown table and never asserts. It writes a runs folder of generated data
at the shape of the full matrix (7 aggregators x DPO/KTOO/KTOR = 21 cells, plus the base model; MT-Bench
80, Vicuna 80 and AdvBench 520 questions; answers of about 1,000 characters, a judge reply per answer,
a few judge failures; 10 rounds of history per cell), the way the harness writes it (run directories
through ``RunDir``, answers files through ``export_answers``, scores and judgments through ``Store``),
so nothing is trained or downloaded. Then it writes the report and measures:

* the report's size (target < 50 MB) and the time to write it;
* headless Chromium (``--dump-dom``): the time from navigation to the page being ready (its script done:
  ``data-ready-ms``, measured in the page) and the part the script took (parsing the embedded data, setting
  up: ``data-script-ms``); the wall time of the whole browser process, beside the same on an empty page
  (the browser's own start-up; the rest is mostly writing the whole DOM out), and of a ``--screenshot`` run
  (open and paint, nothing written out but the picture);
* the same with the largest benchmark opened (``#bench=advbench``: its first chunk of questions rendered).
"""

from __future__ import annotations

import argparse
import random
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from fedbench.harness.checkpoint import RoundRecord, RunDir, RunResult
from fedbench.harness.interfaces import Judgment, Question
from fedbench.harness.results.report import write_report
from fedbench.harness.scoring import export_answers
from fedbench.harness.spec import RunSpec
from fedbench.harness.store import ScoreRow, Store
from fedbench.harness.study_table import AGGREGATOR_ORDER
from fedbench.harness.subjects import base_subject

BENCHMARKS = {"mt_bench_1": (80, "llm", 10.0), "vicuna": (80, "llm", 10.0), "advbench": (520, "keyword", 100.0)}
VARIANTS = (("dpo", "original"), ("kto", "original"), ("kto", "redistributed"))
WORDS = "the model answers a question about federated learning with clients rounds and <tags> & symbols".split()
CLIENTS = [f"user{i}" for i in range(12)]


def _text(rng: random.Random, chars: int) -> str:
    words: list[str] = []
    while sum(len(w) + 1 for w in words) < chars:
        words.append(rng.choice(WORDS))
    return " ".join(words)[:chars]


def _history(rng: random.Random, rounds: int) -> list[RoundRecord]:
    out = []
    for r in range(1, rounds + 1):
        clients = rng.sample(CLIENTS, 3)
        losses = {c: 0.7 - 0.02 * r + rng.uniform(-0.05, 0.05) for c in clients[:2]}
        rejected = {clients[2]: "update has NaN values"} if rng.random() < 0.2 else {}
        if not rejected:
            losses[clients[2]] = 0.7 - 0.02 * r + rng.uniform(-0.05, 0.05)
        mean = sum(losses.values()) / len(losses)
        out.append(RoundRecord(r, 5e-4, tuple(clients), mean, losses, rejected, 3 * 2_000_000, 3 * 2_000_100, 12.0, 13.5))
    return out


def build(runs: Path, answer_chars: int, rounds: int, seed: int = 0) -> int:
    """The generated runs folder; returns the number of answers written."""
    rng = random.Random(seed)
    store = Store.in_runs(runs)
    questions = {
        bench: [Question(f"{bench}-{i}", _text(rng, 200), "general") for i in range(n)] for bench, (n, _, _) in BENCHMARKS.items()
    }
    base = base_subject("m", "chat", "float32")
    subjects: list[tuple[str, Path, str, str, str, int | None, tuple[int, int] | None]] = [
        (base.key, runs / base.key, "base", "", "", None, None)
    ]
    for agg in AGGREGATOR_ORDER:
        for method, layout in VARIANTS:
            spec = RunSpec(model="m", method=method, layout=layout, aggregator=agg, rounds=rounds)
            run_dir = RunDir(runs, spec)
            run_dir.prepare()
            result = RunResult(spec, "local", _history(rng, rounds))
            run_dir.finish(result)
            subjects.append((spec.hash, run_dir.path, method, layout, agg, 0, result.traffic))
    written = 0
    for key, home, method, layout, agg, seed_, traffic in subjects:
        for bench, (n, judge, scale) in BENCHMARKS.items():
            answers = {q.id: _text(rng, int(answer_chars * rng.uniform(0.6, 1.4))) for q in questions[bench]}
            if judge == "keyword":
                verdicts = [Judgment(q.id, float(rng.random() < 0.7), "refusal keyword found") for q in questions[bench]]
            else:
                verdicts = [
                    Judgment(q.id, None, _text(rng, 300))
                    if rng.random() < 0.02
                    else Judgment(q.id, float(rng.randint(1, 10)), _text(rng, 300) + " Rating: [[7]]")
                    for q in questions[bench]
                ]
            store.add_judgments(key, bench, judge, verdicts)
            export_answers(home, bench, questions[bench], answers, verdicts, {"judge": judge})
            written += len(answers)
            values = [v.score for v in verdicts if v.score is not None]
            mean = sum(values) / len(values) * (100.0 if judge == "keyword" else 1.0)
            half = 0.05 * scale
            store.put_score(
                ScoreRow(
                    key,
                    bench,
                    judge,
                    method,
                    layout,
                    agg,
                    "m",
                    mean,
                    scale,
                    n,
                    n - len(values),
                    "generated",
                    bytes_down=None if traffic is None else traffic[0],
                    bytes_up=None if traffic is None else traffic[1],
                    ci_low=mean - half,
                    ci_high=mean + half,
                    ci_note="bootstrap",
                    seed=seed_,
                )
            )
    store.close()
    return written


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def load(browser: str, url: str, profile: Path, *how: str) -> tuple[float, str]:
    """Wall seconds of a headless Chromium that loads ``url`` and then does ``how`` (default: dump the DOM), and its output."""
    started = time.perf_counter()
    dom = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"]
        + ["--disable-sync", "--no-first-run", f"--user-data-dir={profile}", *(how or ["--dump-dom"]), url],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    ).stdout
    return time.perf_counter() - started, dom


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--answer-chars", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--keep", type=Path, default=None, help="write the runs folder and report here and keep them")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="fedbench-report-size-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        started = time.perf_counter()
        answers = build(root / "runs", args.answer_chars, args.rounds)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        report = write_report(root / "runs", root / "report.html")
        writing = time.perf_counter() - started
        size = (root / "report.html").stat().st_size / 1e6
        rows = [
            ("generated data", f"{len(report.cells)} cells + base, {answers} answers, {generated:.0f} s"),
            ("report size", f"{size:.1f} MB (target < 50 MB: {'met' if size < 50 else 'missed'})"),
            ("time to write the report", f"{writing:.1f} s"),
        ]
        browser = chromium()
        if browser is None:
            rows.append(("headless Chromium", "not installed: no load time (apt-get install chromium)"))
        else:
            (root / "empty.html").write_text("<!doctype html><title>empty</title>")
            empty, _ = load(browser, (root / "empty.html").as_uri(), root / "profile")
            shot = [f"--screenshot={root / 'report.png'}", "--window-size=1400,1400"]
            painted, _ = load(browser, (root / "report.html").as_uri(), root / "profile", *shot)
            rows.append(
                (
                    "headless Chromium: open and paint (--screenshot)",
                    f"{painted:.1f} s wall for the browser process, of which start-up (an empty page) {empty:.1f} s",
                )
            )
            for label, suffix in (("load", ""), ("load with advbench opened (first chunk)", "#bench=advbench")):
                seconds, dom = load(browser, (root / "report.html").as_uri() + suffix, root / "profile")
                ready = re.search(r'data-ready-ms="(\d+)"', dom)
                script = re.search(r'data-script-ms="(\d+)"', dom)
                if ready and script:
                    after, own = int(ready.group(1)) / 1000, int(script.group(1)) / 1000
                    in_page = f"ready {after:.2f} s after navigation (its script {own:.2f} s)"
                else:
                    in_page = "the page's script did not finish"
                shown = dom.count('<section class="answer"')
                rows.append(
                    (
                        f"headless Chromium: {label}",
                        f"{in_page}; {shown} answers drawn; browser process {seconds:.1f} s wall, "
                        f"an empty page {empty:.1f} s (start-up; the rest is mostly dumping the {size:.0f} MB DOM)",
                    )
                )
        print(f"fedbench report at full size ({root / 'report.html'})\n")
        print("| figure | value |\n|---|---|")
        for name, value in rows:
            print(f"| {name} | {value} |")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
