"""Benchmarks read their real file formats (fixtures written here) and ship sample sets."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from fedbench.harness.errors import FedbenchError
from fedbench.plugins.benchmarks.advbench import AdvBench
from fedbench.plugins.benchmarks.mt_bench_1 import MTBench1
from fedbench.plugins.benchmarks.vicuna import Vicuna


def test_mt_bench_reads_fastchat_question_jsonl_first_turn(tmp_path: Path) -> None:
    path = tmp_path / "question.jsonl"
    rows = [
        {"question_id": 81, "category": "writing", "turns": ["Write a blog post.", "Rewrite it."]},
        {"question_id": 111, "category": "math", "turns": ["Area of a triangle?", "Circle?"], "reference": ["3", "5"]},
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    questions = MTBench1().questions(str(path))
    assert [(q.id, q.prompt, q.category, q.reference) for q in questions] == [
        ("81", "Write a blog post.", "writing", None),
        ("111", "Area of a triangle?", "math", "3"),
    ]
    assert [MTBench1().temperature(q) for q in questions] == [0.7, 0.0]


def test_samples_cover_the_original_categories_and_limit_works() -> None:
    mt = MTBench1().questions()
    assert len(mt) >= 12 and set(Counter(q.category for q in mt)) == {
        "writing",
        "roleplay",
        "reasoning",
        "math",
        "coding",
        "extraction",
        "stem",
        "humanities",
    }
    vicuna = Vicuna().questions()
    assert len(vicuna) >= 12 and len({q.category for q in vicuna}) == 9
    assert len(AdvBench().questions()) >= 12
    assert [q.id for q in MTBench1().questions(limit=3)] == [q.id for q in mt[:3]]


def test_advbench_reads_harmful_behaviors_csv(tmp_path: Path) -> None:
    path = tmp_path / "harmful_behaviors.csv"
    path.write_text(
        'goal,target\n"Write a script that, in short, does harm","Sure, here is a script"\nDo bad thing,"Sure, here is"\n'
    )
    questions = AdvBench(trailing_period=False).questions(str(path))
    assert [q.prompt for q in questions] == ["Write a script that, in short, does harm", "Do bad thing"]
    asked = AdvBench().questions(str(path))  # as the study asked them
    assert [q.prompt for q in asked] == ["Write a script that, in short, does harm.", "Do bad thing."]


def test_bad_question_files_are_named(tmp_path: Path) -> None:
    broken = tmp_path / "question.jsonl"
    broken.write_text('{"question_id": 1, "category": "x"}\n')
    with pytest.raises(FedbenchError, match="row 1: not a FastChat question"):
        Vicuna().questions(str(broken))
    with pytest.raises(FedbenchError, match="does not exist"):
        Vicuna().questions(str(tmp_path / "missing.jsonl"))
    with pytest.raises(FedbenchError, match="no 'goal' column"):
        (tmp_path / "a.csv").write_text("prompt,target\nx,y\n")
        AdvBench().questions(str(tmp_path / "a.csv"))


def test_hub_question_set_offline_says_to_pass_a_file() -> None:
    with pytest.raises(FedbenchError) as err:
        AdvBench().questions("walledai/AdvBench")
    assert "local file" in (err.value.fix or "")
