"""The results store round-trips, and the leaderboard has the study's shape in every format."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from fedbench.harness.interfaces import Judgment, Question
from fedbench.harness.leaderboard import BASE_ROW, build_matrix, plot, to_csv, to_html, to_json, to_markdown, to_rich
from fedbench.harness.store import ScoreRow, Store


def _row(agg: str, method: str, layout: str, bench: str, score: float | None, created: float = 1.0) -> ScoreRow:
    scale = 100.0 if bench == "advbench" else 10.0
    return ScoreRow(f"{method}-{layout}-{agg}", bench, "llm", method, layout, agg, "m", score, scale, 8, 0, "s", created=created)


SCORES = [
    _row("fedavg", "dpo", "original", "mt_bench_1", 4.0),
    _row("fedavg", "kto", "original", "mt_bench_1", 5.5),
    _row("fedavg", "kto", "redistributed", "mt_bench_1", 6.0),
    _row("fedprox", "dpo", "original", "mt_bench_1", 4.5),
    _row("fedprox", "kto", "redistributed", "mt_bench_1", 5.0),
    _row("fedavg", "kto", "redistributed", "advbench", 62.5),
    ScoreRow("base-1", "mt_bench_1", "llm", "base", "", "", "m", 3.0, 10.0, 8, 0, "s", created=1.0),
]


def test_store_round_trip_and_no_duplicates(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    for row in SCORES + SCORES:
        store.put_score(row)
    assert sorted(store.scores(), key=lambda r: (r.subject, r.benchmark)) == sorted(SCORES, key=lambda r: (r.subject, r.benchmark))
    q = [Question("1", "hi"), Question("2", "yo")]
    store.add_answers("s", "vicuna", q, ["a1", "a2"], {"t": 0})
    store.add_answers("s", "vicuna", q[:1], ["a1 again"], {"t": 0})
    assert store.answers("s", "vicuna") == {"1": "a1 again", "2": "a2"}
    store.add_judgments("s", "vicuna", "llm", [Judgment("1", None, "unparseable reply")])
    assert store.judgments("s", "vicuna", "llm")["1"] == Judgment("1", None, "unparseable reply")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_matrix_shape_best_marking_and_empty_cells() -> None:
    m = build_matrix(SCORES)
    assert m.benchmarks == ["mt_bench_1", "advbench"]
    assert m.variants == ["DPO", "KTOO", "KTOR"]
    assert m.rows == ["fedavg", "fedprox", BASE_ROW]
    assert m.best("mt_bench_1", "DPO") == 4.5 and m.best("mt_bench_1", "KTOR") == 6.0
    assert m.value("fedprox", "mt_bench_1", "KTOO") is None
    assert m.value(BASE_ROW, "mt_bench_1", "KTOR") == 3.0
    table = list(csv.reader(io.StringIO(to_csv(m))))
    assert table[0][:4] == ["aggregator", "mt_bench_1 DPO", "mt_bench_1 KTOO", "mt_bench_1 KTOR"]
    fedprox = dict(zip(table[0], table[2]))
    assert fedprox["mt_bench_1 KTOO"] == "" and fedprox["advbench KTOR"] == ""  # missing is empty, never zero
    assert "| fedprox | **4.50** |  | 5.00 |" in to_markdown(m)
    entries = json.loads(to_json(m))["entries"]
    best = {(e["row"], e["benchmark"], e["variant"]) for e in entries if e["best"]}
    assert ("fedprox", "mt_bench_1", "DPO") in best and ("fedavg", "mt_bench_1", "DPO") not in best
    assert to_rich(m).row_count == 3


def test_newest_score_wins() -> None:
    m = build_matrix([_row("fedavg", "dpo", "original", "vicuna", 2.0, created=1), _row("fedavg", "dpo", "original", "vicuna", 7.0, created=2)])
    assert m.value("fedavg", "vicuna", "DPO") == 7.0


def test_plot_writes_a_png(tmp_path: Path) -> None:
    plot(build_matrix(SCORES), tmp_path / "board.png")
    assert (tmp_path / "board.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_html_page_renders_the_table_in_a_browser(tmp_path: Path) -> None:
    page = tmp_path / "board.html"
    page.write_text(to_html(build_matrix(SCORES)))
    dom = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout
    assert '<table id="leaderboard">' in dom
    assert dom.count("<tr>") == 2 + 3  # two header rows, fedavg, fedprox, Base
    assert 'class="best" data-bench="mt_bench_1" data-variant="KTOR">6.00</td>' in dom
    assert 'class="empty" data-bench="mt_bench_1" data-variant="KTOO"></td>' in dom
