"""The results store round-trips, and the leaderboard has the study's shape in every format."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from fedbench.harness.interfaces import Judgment, Question
from fedbench.harness.results.model import build_matrix
from fedbench.harness.results.render_csv import to_csv
from fedbench.harness.results.render_html import to_html
from fedbench.harness.results.render_json import compare_json, to_json
from fedbench.harness.results.render_markdown import to_markdown
from fedbench.harness.results.render_png import plot
from fedbench.harness.results.render_rich import to_rich
from fedbench.harness.store import SCHEMA_VERSION, ScoreRow, Store
from fedbench.harness.study_table import BASE_ROW


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
    assert sorted(store.scores(), key=lambda r: (r.subject, r.benchmark)) == sorted(
        SCORES, key=lambda r: (r.subject, r.benchmark)
    )
    q = [Question("1", "hi"), Question("2", "yo")]
    store.add_answers("s", "vicuna", q, ["a1", "a2"], {"t": 0})
    store.add_answers("s", "vicuna", q[:1], ["a1 again"], {"t": 0})
    assert store.answers("s", "vicuna") == {"1": "a1 again", "2": "a2"}
    store.add_judgments("s", "vicuna", "llm", [Judgment("1", None, "unparseable reply")])
    assert store.judgments("s", "vicuna", "llm")["1"] == Judgment("1", None, "unparseable reply")
    assert store.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    store.close()


def test_matrix_shape_and_empty_cells() -> None:
    m = build_matrix(SCORES)
    assert m.benchmarks == ["mt_bench_1", "advbench"]
    assert m.variants == ["DPO", "KTOO", "KTOR"]
    assert m.rows == ["fedavg", "fedprox", BASE_ROW]
    assert m.value("fedprox", "mt_bench_1", "KTOO") is None
    assert m.value(BASE_ROW, "mt_bench_1", "KTOR") == 3.0
    table = list(csv.reader(io.StringIO(to_csv(m))))
    assert table[0][:4] == ["aggregator", "mt_bench_1 DPO", "mt_bench_1 KTOO", "mt_bench_1 KTOR"]
    assert "mt_bench_1 DPO lo" in table[0] and "mt_bench_1 DPO hi" in table[0]
    fedprox = dict(zip(table[0], table[2]))
    assert fedprox["mt_bench_1 KTOO"] == "" and fedprox["advbench KTOR"] == ""  # missing is empty, never zero
    assert "| fedprox | 4.50 |  | 5.00 |" in to_markdown(m)
    # without per-question scores nothing is compared, so nothing is called best
    assert not any(e["best"] or e["tie"] for e in json.loads(to_json(m))["entries"])
    tables = [t for t in to_rich(m).renderables if hasattr(t, "row_count")]  # one table per benchmark
    assert [t.row_count for t in tables] == [3, 3] and [str(t.title) for t in tables] == [
        "[bold]mt_bench_1[/]",
        "[bold]advbench[/]",
    ]


def _planted_store(tmp_path: Path, ktor_shift: float, seeds: tuple[int, ...] = (0,)) -> Store:
    """DPO, KTOO and KTOR of fedavg on 40 shared questions: KTOO = DPO + noise, KTOR = DPO + ``ktor_shift`` + noise."""
    import numpy as np

    store = Store(tmp_path / "results.sqlite")
    rng = np.random.default_rng(7)
    for seed in seeds:
        dpo = rng.uniform(3, 7, size=40)
        for method, layout, values in (
            ("dpo", "original", dpo),
            ("kto", "original", dpo + rng.normal(0, 0.3, 40)),
            ("kto", "redistributed", dpo + ktor_shift + rng.normal(0, 0.3, 40)),
        ):
            subject = f"{method}-{layout}-{seed}"
            store.add_judgments(subject, "vicuna", "llm", [Judgment(str(q), float(v), "") for q, v in enumerate(values)])
            store.put_score(
                ScoreRow(
                    subject,
                    "vicuna",
                    "llm",
                    method,
                    layout,
                    "fedavg",
                    "m",
                    float(values.mean()),
                    10.0,
                    40,
                    0,
                    "s",
                    ci_low=float(values.mean()) - 0.1,
                    ci_high=float(values.mean()) + 0.1,
                    seed=seed,
                    settings_key=f"{method}-{layout}",
                )
            )
    return store


def _board(store: Store):  # noqa: ANN202
    return build_matrix(store.scores(), questions=lambda r: store.question_scores(r.subject, r.benchmark, r.judge))


def test_best_is_marked_only_when_separated_by_the_paired_test(tmp_path: Path) -> None:
    separated = _board(_planted_store(tmp_path / "a", ktor_shift=1.0))
    assert separated.mark("fedavg", "vicuna", "KTOR") == "best"
    assert separated.mark("fedavg", "vicuna", "DPO") == "" and separated.mark("fedavg", "vicuna", "KTOO") == ""
    close = _board(_planted_store(tmp_path / "b", ktor_shift=0.0))
    marks = {v: close.mark("fedavg", "vicuna", v) for v in close.variants}
    assert "best" not in marks.values() and list(marks.values()).count("tie") == 1
    assert "(tie)" in to_markdown(close) and "**" not in to_markdown(close).split("\n\n")[0]


def test_compare_gives_paired_differences_with_holm_corrected_p_values(tmp_path: Path) -> None:
    out = json.loads(compare_json(_board(_planted_store(tmp_path, ktor_shift=1.0))))
    found = {c["comparison"]: c for c in out["comparisons"]}
    assert set(found) == {"KTOO - DPO", "KTOR - DPO", "KTOR - KTOO"}
    assert found["KTOR - DPO"]["p_holm"] < 0.01 and found["KTOR - DPO"]["ci_low"] > 0.5
    assert found["KTOO - DPO"]["p_holm"] > 0.05 and found["KTOO - DPO"]["ci_low"] < 0 < found["KTOO - DPO"]["ci_high"]
    assert all(c["p_holm"] >= c["p_value"] for c in found.values()) and all(c["n"] == 40 for c in found.values())
    assert "Holm" in out["test"]


def test_repeated_seeds_pool_into_one_entry_with_an_interval_over_seeds_and_questions(tmp_path: Path) -> None:
    m = _board(_planted_store(tmp_path, ktor_shift=1.0, seeds=(0, 1, 2)))
    entry = m.entry("fedavg", "vicuna", "KTOR")
    assert entry.seeds == (0, 1, 2) and len(entry.runs) == 3
    assert entry.score == pytest.approx(sum(r.score for r in entry.runs) / 3)
    assert entry.ci_note == "seeds x questions bootstrap" and entry.ci_low < entry.score < entry.ci_high
    data = {(e["row"], e["variant"]): e for e in json.loads(to_json(m))["entries"]}
    ktor = data[("fedavg", "KTOR")]
    assert ktor["seeds"] == [0, 1, 2] and [p["seed"] for p in ktor["per_seed"]] == [0, 1, 2]
    assert {"ci_low", "ci_high", "n"} <= set(ktor)
    assert next(c for c in m.comparisons[("fedavg", "vicuna")] if c.a == "KTOR" and c.b == "DPO").n == 120


def test_a_schema_1_store_opens_keeps_its_rows_and_shows_them_without_an_interval(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "results.sqlite"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE scores (subject TEXT NOT NULL, benchmark TEXT NOT NULL, judge TEXT NOT NULL, method TEXT NOT NULL,
            layout TEXT NOT NULL, aggregator TEXT NOT NULL, model TEXT NOT NULL, score REAL, scale REAL NOT NULL,
            n INTEGER NOT NULL, failures INTEGER NOT NULL, judge_setting TEXT NOT NULL, bytes_down INTEGER, bytes_up INTEGER,
            created REAL NOT NULL, PRIMARY KEY (subject, benchmark, judge));
        CREATE TABLE answers (subject TEXT NOT NULL, benchmark TEXT NOT NULL, question_id TEXT NOT NULL, prompt TEXT NOT NULL,
            answer TEXT NOT NULL, settings TEXT NOT NULL, PRIMARY KEY (subject, benchmark, question_id));
        CREATE TABLE judgments (subject TEXT NOT NULL, benchmark TEXT NOT NULL, judge TEXT NOT NULL, question_id TEXT NOT NULL,
            score REAL, raw TEXT NOT NULL, PRIMARY KEY (subject, benchmark, judge, question_id));
        INSERT INTO meta VALUES ('schema_version', '1');
        INSERT INTO scores VALUES ('h1', 'vicuna', 'llm', 'kto', 'original', 'fedavg', 'm', 6.5, 10, 8, 0, 's', NULL, NULL, 1.0);
        INSERT INTO answers VALUES ('h1', 'vicuna', '1', 'q', 'a', '{}');
        INSERT INTO judgments VALUES ('h1', 'vicuna', 'llm', '1', 6.5, 'r');
    """)
    db.commit()
    db.close()
    store = Store(path)
    (row,) = store.scores()
    assert (row.subject, row.score, row.ci_low, row.ci_high) == ("h1", 6.5, None, None) and "schema 1" in row.ci_note
    assert store.answers("h1", "vicuna") == {"1": "a"} and store.judgments("h1", "vicuna", "llm")["1"].score == 6.5
    entry = json.loads(to_json(_board(store)))["entries"][0]
    assert entry["ci_low"] is None and "schema 1" in entry["ci_note"]
    assert "| fedavg | 6.50 (no CI) |" in to_markdown(_board(store))
    store.close()
    assert Store(path).db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)  # migrated once, reopened as is
    assert row.tag is None


def test_a_schema_2_store_gains_the_tag_column_and_keeps_its_rows(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    store.put_score(SCORES[0])
    with store.db:  # what a store written before the tag column looks like
        store.db.execute("ALTER TABLE scores DROP COLUMN tag")
        store.db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    store.close()
    again = Store(tmp_path / "results.sqlite")
    assert again.scores() == [SCORES[0]] and again.db.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)


def test_privacy_and_codec_settings_get_their_own_rows_beside_the_plain_cell() -> None:
    tagged = [
        replace(_row("fedavg", "dpo", "original", "mt_bench_1", 2.0, created=5.0), subject="dp", tag="DP eps<=8 C=0.1"),
        replace(_row("fedavg", "dpo", "original", "mt_bench_1", 3.5, created=6.0), subject="q", tag="int8"),
    ]
    m = build_matrix(SCORES + tagged)
    assert m.rows == ["fedavg", "fedavg [DP eps<=8 C=0.1]", "fedavg [int8]", "fedprox", BASE_ROW]
    assert m.value("fedavg", "mt_bench_1", "DPO") == 4.0, "the newer tagged cells do not replace the plain one"
    assert m.value("fedavg [int8]", "mt_bench_1", "DPO") == 3.5


def test_newest_score_wins() -> None:
    m = build_matrix(
        [_row("fedavg", "dpo", "original", "vicuna", 2.0, created=1), _row("fedavg", "dpo", "original", "vicuna", 7.0, created=2)]
    )
    assert m.value("fedavg", "vicuna", "DPO") == 7.0


def test_plot_writes_a_png(tmp_path: Path) -> None:
    plot(build_matrix(SCORES), tmp_path / "board.png")
    assert (tmp_path / "board.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def headless_chromium(tmp_path: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run headless Chromium on ``url`` with ``args`` (e.g. ``--dump-dom``) in a throwaway profile."""
    assert CHROMIUM is not None
    return subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            f"--user-data-dir={tmp_path / 'profile'}",
            *args,
            url,
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_html_page_renders_the_table_in_a_browser(tmp_path: Path) -> None:
    page = tmp_path / "board.html"
    page.write_text(to_html(build_matrix(SCORES)))
    dom = headless_chromium(tmp_path, page.as_uri(), "--dump-dom").stdout
    assert '<table id="leaderboard">' in dom
    assert dom.count("<tr>") == 2 + 3  # two header rows, fedavg, fedprox, Base
    assert 'data-bench="mt_bench_1" data-variant="KTOR">6.00</td>' in dom
    assert 'class="empty" data-bench="mt_bench_1" data-variant="KTOO"></td>' in dom


def test_a_rate_of_zero_over_seeds_keeps_a_nonzero_interval(tmp_path: Path) -> None:
    store = Store(tmp_path / "results.sqlite")
    for seed in (0, 1):
        subject = f"kto-{seed}"
        store.add_judgments(subject, "advbench", "keyword", [Judgment(str(q), 0.0, "") for q in range(6)])
        store.put_score(
            ScoreRow(
                subject,
                "advbench",
                "keyword",
                "kto",
                "original",
                "fedavg",
                "m",
                0.0,
                100.0,
                6,
                0,
                "s",
                ci_low=0.0,
                ci_high=39.0,
                seed=seed,
                settings_key="k",
            )
        )
    entry = _board(store).entry("fedavg", "advbench", "KTOO")
    assert entry.seeds == (0, 1) and entry.ci_low == 0.0 and 20 < entry.ci_high < 39  # Wilson over the 12 pooled answers
    store.close()


def test_the_terminal_table_keeps_a_tagged_rows_brackets() -> None:
    """'[label-flip 25%]' or '[int8]' would read as rich markup and vanish, leaving two rows both named 'fedavg'."""
    from rich.console import Console

    from fedbench.harness.results.render_rich import to_rich

    tagged = [replace(s, subject=f"{s.subject}-{tag}", tag=tag) for s in SCORES[:1] for tag in ("label-flip 25%", "int8")]
    console = Console(width=200, record=True)
    console.print(to_rich(build_matrix(SCORES + tagged)))
    text = console.export_text()
    assert "fedavg [label-flip 25%]" in text and "fedavg [int8]" in text


def test_tagged_rows_follow_their_numbers() -> None:
    from fedbench.harness.results.model import row_order

    rows = ["fedavg [paired_fraction=1]", "fedavg [paired_fraction=0.5]", "fedavg", "fedavg [paired_fraction=0]"]
    assert sorted(rows, key=row_order) == [
        "fedavg",
        "fedavg [paired_fraction=0]",
        "fedavg [paired_fraction=0.5]",
        "fedavg [paired_fraction=1]",
    ]
    assert sorted(["median [label-flip 25%]", "median [label-flip 5%]"], key=row_order)[0] == "median [label-flip 5%]"


def test_compare_sets_each_tagged_row_against_its_plain_row_per_variant() -> None:
    """What label-flipping costs each variant: KTOO [label-flip 25%] - KTOO, paired over the same held-out pairs."""
    from fedbench.harness.results.model import build_matrix, comparison_rows

    def row(subject: str, method: str, layout: str, tag: str = "") -> ScoreRow:
        return replace(_row("median", method, layout, "preference.reward", 50.0), subject=subject, tag=tag, scale=100.0)

    rows = [row("d", "dpo", "original"), row("k", "kto", "original"), row("dt", "dpo", "original", "label-flip 25%")]
    rows.append(row("kt", "kto", "original", "label-flip 25%"))
    clean = {str(q): 100.0 for q in range(20)}
    hit = {"d": clean, "k": clean, "dt": {q: 0.0 if int(q) < 10 else 100.0 for q in clean}, "kt": clean}
    m = build_matrix(rows, questions=lambda r: hit[r.subject])
    effects = {
        c["comparison"]: c for c in comparison_rows(m) if c["aggregator"] == "median [label-flip 25%]" and "[" in c["comparison"]
    }
    assert set(effects) == {"DPO [label-flip 25%] - DPO", "KTOO [label-flip 25%] - KTOO"}
    assert effects["DPO [label-flip 25%] - DPO"]["difference"] == -50.0 and effects["DPO [label-flip 25%] - DPO"]["significant"]
    assert effects["KTOO [label-flip 25%] - KTOO"]["difference"] == 0.0
