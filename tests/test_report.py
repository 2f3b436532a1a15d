"""`fedbench report`: one self-contained page with the table, each cell's training and every answer, checked in a
real headless browser where Debian's chromium is installed."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path

import pytest
from test_leaderboard import CHROMIUM, _row, headless_chromium
from test_study import HISTORY_ENTRY
from typer.testing import CliRunner

from fedbench.harness.checkpoint import RoundRecord, RunDir, RunResult
from fedbench.harness.cli import app
from fedbench.harness.interfaces import Judgment, Question
from fedbench.harness.results.gather import gather
from fedbench.harness.results.render_html import to_html
from fedbench.harness.results.report import script_json
from fedbench.harness.scoring import export_answers
from fedbench.harness.spec import RunSpec
from fedbench.harness.store import Store
from fedbench.harness.subjects import base_subject

XSS = "<script>alert(1)</script>"
QUESTIONS = [Question("1", "What is 1 + 1?", "math"), Question("2", "Write <b>one</b> word & stop.", "writing")]
CELLS = {  # (method, layout) -> (score, answers, judge scores); KTOO has scores but no answers file
    ("dpo", "original"): (6.5, ["two", XSS], [7.0, 6.0]),
    ("kto", "original"): (5.0, None, [5.0, 5.0]),
    ("kto", "redistributed"): (7.25, ["2", "word"], [7.25, None]),  # a judge failure on question 2
}
DPO = "dpo-original-fedavg"


def _spec(method: str, layout: str) -> RunSpec:
    return RunSpec(model="m", method=method, layout=layout, aggregator="fedavg", rounds=2)


def _train(runs: Path, spec: RunSpec) -> RunDir:
    """A finished cell without training: its spec and a two-round history (the second round rejects a client)."""
    run_dir = RunDir(runs, spec)
    run_dir.prepare()
    first = RoundRecord.from_dict(HISTORY_ENTRY | {"rejected": {}})
    second = RoundRecord.from_dict(HISTORY_ENTRY | {"round": 2, "loss": 0.61, "client_loss": {"user1": 0.6, "user0": 0.62}})
    run_dir.finish(RunResult(spec, "local", [first, second]))
    return run_dir


def _answered(store: Store, home: Path, subject: str, answers: list[str] | None, scores: list[float | None]) -> None:
    """Judgments in the store and, where there are answers, the answers file evaluation writes."""
    verdicts = [
        Judgment(q.id, s, f"[[{s}]] reply to {q.id}" if s is not None else "no rating found") for q, s in zip(QUESTIONS, scores)
    ]
    store.add_judgments(subject, "vicuna", "llm", verdicts)
    if answers is not None:
        store.add_answers(subject, "vicuna", QUESTIONS, answers, {})
        export_answers(home, "vicuna", QUESTIONS, dict(zip(["1", "2"], answers)), verdicts, {"judge": "llm"})


def build_runs(root: Path) -> Path:
    """A runs folder of three trained cells and the base model, scored on two vicuna questions."""
    runs = root / "runs"
    store = Store.in_runs(runs)
    for (method, layout), (score, answers, judged) in CELLS.items():
        spec = _spec(method, layout)
        run_dir = _train(runs, spec)
        _answered(store, run_dir.path, spec.hash, answers, judged)
        row = _row("fedavg", method, layout, "vicuna", score)
        store.put_score(replace(row, subject=spec.hash, ci_low=score - 0.5, ci_high=score + 0.5, bytes_down=8192, bytes_up=8200))
    base = base_subject("m", "chat", "float32")
    _answered(store, runs / base.key, base.key, ["1 + 1 = 2", "Word."], [3.0, 3.0])
    store.put_score(replace(_row("", "base", "", "vicuna", 3.0), subject=base.key))
    store.close()
    return runs


@pytest.fixture()
def runs(tmp_path: Path) -> Path:
    return build_runs(tmp_path)


def _report(runs: Path, out: Path) -> str:
    result = CliRunner().invoke(app, ["report", "--runs", str(runs), "--out", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "report written to" in result.output
    return out.read_text()


def test_the_report_is_one_self_contained_file_with_the_table_training_and_answers(runs: Path, tmp_path: Path) -> None:
    page = _report(runs, tmp_path / "report.html")
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", page, re.I)  # nothing fetched
    assert "<link" not in page and "@import" not in page and "url(" not in page
    assert '<table id="leaderboard">' in page
    assert 'data-variant="DPO">6.50 ±0.50</td>' in page and 'data-variant="KTOR">7.25 ±0.50 (tie)</td>' in page  # intervals
    assert 'data-variant="DPO">3.00</td>' in page and "<h3>Paired comparisons</h3>" in page and "KTOO - DPO" in page
    assert "<svg" in page and "vicuna: scores" in page and "score vs bytes" in page and "training loss" in page
    assert "no reply before the round&#x27;s timeout" in page  # the rejected update and its reason
    assert page.count('<details class="cell"') == 3 and "engine local" in page and "<td>lora_r</td>" in page
    assert "kto-original-fedavg" in page and "no answers file kto-original-fedavg-" in page  # missing answers, with why
    # answers travel as JSON in which no '<' survives: the <script> answer cannot end the data element
    assert XSS not in page and "\\u003cscript>alert(1)\\u003c/script>" in page
    assert page.count("<script") == 3  # the error trap, the data, the page's script


def test_a_folder_without_scores_still_reports_the_training_side(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    _train(runs, _spec("dpo", "original"))
    page = _report(runs, tmp_path / "report.html")
    assert "no scores in" in page and "training side only" in page
    assert DPO in page and "training loss" in page and "Rejected updates" in page
    Store.in_runs(runs).close()  # an empty store says the same
    assert "results.sqlite holds none" in _report(runs, tmp_path / "again.html")


def test_a_folder_with_nothing_to_report_is_refused_with_the_fix(tmp_path: Path) -> None:
    wide = {"COLUMNS": "300"}
    empty = CliRunner().invoke(app, ["report", "--runs", str(tmp_path), "--out", str(tmp_path / "r.html")], env=wide)
    assert empty.exit_code == 2 and "nothing to report" in empty.output and "fix:" in empty.output
    missing = CliRunner().invoke(app, ["report", "--runs", str(tmp_path / "nope"), "--out", str(tmp_path / "r.html")], env=wide)
    assert missing.exit_code == 2 and "is not a folder" in missing.output
    assert not (tmp_path / "r.html").exists()


def test_gathered_records_name_failures_and_missing_answers(runs: Path) -> None:
    report = gather(runs)
    (vicuna,) = report.benchmarks
    assert [s.label for s in vicuna.sets] == ["base", DPO, "kto-original-fedavg", "kto-redistributed-fedavg"]
    assert [q.prompt for q in vicuna.questions] == [q.prompt for q in QUESTIONS]
    ktor = vicuna.sets[3]
    assert ktor.failures == 1 and ktor.verdicts["llm"]["2"].score is None and ktor.problem is None
    assert vicuna.missing == [("kto-original-fedavg", vicuna.sets[2].problem)]
    assert "holds no answers either" in str(vicuna.sets[2].problem)
    cell = next(c for c in report.cells if c.label == DPO)
    assert cell.rejected == [(2, "user2", "no reply before the round's timeout")] and cell.traffic == (8192, 8200)
    assert cell.wall_seconds == 5.0 and cell.final_loss == 0.61
    assert script_json({"a": "</script><!--"}) == '{"a":"\\u003c/script>\\u003c!--"}'


def test_leaderboard_html_is_still_the_table_alone(runs: Path) -> None:
    store = Store.in_runs(runs)
    from fedbench.harness.results.model import build_matrix

    page = to_html(build_matrix(store.scores()))
    store.close()
    assert '<table id="leaderboard">' in page and "report-data" not in page and "<script" not in page


def _dom(tmp_path: Path, url: str) -> str:
    shown = headless_chromium(tmp_path, url, "--dump-dom")
    console = [line for line in shown.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console  # the page logs nothing: no script error, no warning
    assert 'data-ready="1"' in shown.stdout and '<p id="errors" class="notes" hidden=""></p>' in shown.stdout
    return shown.stdout


def _answer_cells(dom: str) -> list[str]:
    return re.findall(r'<section class="answer" data-cell="([^"]+)">', dom)


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)")
def test_the_report_works_in_a_browser(runs: Path, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    _report(runs, page)

    closed = _dom(tmp_path, page.as_uri())  # answers are drawn only when a benchmark is opened
    assert 'data-variant="KTOR">7.25 ±0.50 (tie)</td>' in closed and 'class="sort"' in closed
    assert _answer_cells(closed) == []

    opened = _dom(tmp_path, page.as_uri() + "#bench=vicuna")
    assert _answer_cells(opened) == ["base", DPO, "kto-original-fedavg", "kto-redistributed-fedavg"] * 2
    assert '<div class="text">&lt;script&gt;alert(1)&lt;/script&gt;</div>' in opened and XSS not in opened
    assert '<div class="verdict fail">llm: judge failure' in opened
    assert "no answer: no answers file kto-original-fedavg-" in opened
    assert "Write &lt;b&gt;one&lt;/b&gt; word &amp; stop." in opened

    one = _dom(tmp_path, page.as_uri() + f"#cell={DPO}&bench=vicuna")
    assert _answer_cells(one) == [DPO, DPO]  # filtered to one cell: only its answers
    assert "showing 2 of 2 questions, answers of 1 of 4 subjects" in one

    searched = _dom(tmp_path, page.as_uri() + "#bench=vicuna&q=alert")
    assert re.findall(r'data-question="([^"]+)"', searched) == ["2"]

    shot = tmp_path / "report.png"
    headless_chromium(tmp_path, page.as_uri() + "#bench=vicuna", f"--screenshot={shot}", "--window-size=1400,2200")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_paired_fraction_sweep_is_drawn_as_score_against_pair_availability() -> None:
    from fedbench.harness.results.model import build_matrix
    from fedbench.harness.results.svg import pairing_svg
    from fedbench.harness.store import ScoreRow

    rows = [
        ScoreRow(f"{m}-{p}", "preference", "reward", m, "partial", "fedavg", "m", score, 100.0, 50, 0, "s",
                 ci_low=score - 5, ci_high=score + 5, tag=f"paired_fraction={p}")
        for m, points in (("dpo", ((0.5, 60.0), (1, 70.0))), ("kto", ((0, 62.0), (0.5, 64.0), (1, 66.0))))
        for p, score in points
    ]  # fmt: skip
    svg = pairing_svg(build_matrix(rows), "preference")
    assert svg is not None and svg.count("<polyline") == 2, "one line per objective"
    assert "DPO/P at paired_fraction 0.5: 60.0" in svg and "KTO/P at paired_fraction 0: 62.0" in svg
    assert svg.count('r="3.5"') == 5, "one point per (objective, p)"
    assert pairing_svg(build_matrix(rows[:1]), "preference") is None, "nothing to draw without two values of p"
