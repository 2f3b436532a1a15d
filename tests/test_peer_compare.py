"""benchmarks/peer_compare.py reads compare.sh's lines into seconds per run and study / fedbench ratios."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

import peer_compare  # noqa: E402

OUTPUT = """peer main_kto.py: 84.17 s (rc 0) PEER_WALL_S 81.2
fedbench kto redistributed : 42.0 s (rc 0) train_s=54.8 54.9
fedbench kto redistributed --set dtype=bfloat16: 56.4 s (rc 0) train_s=48.6 48.6
peer main_dpo.py: 106.8 s (rc 1) PEER_WALL_S
fedbench dpo original : 70.8 s (rc 0) train_s=63.1 63.2
logs in /tmp/x
"""


def test_compare_lines_give_seconds_and_ratios_and_a_failed_run_counts_for_nothing() -> None:
    seconds = peer_compare.parse(OUTPUT)
    assert seconds == {
        "peer main_kto.py": 84.17,
        "fedbench kto redistributed": 42.0,
        "fedbench kto redistributed --set dtype=bfloat16": 56.4,
        "fedbench dpo original": 70.8,
    }
    assert peer_compare.ratios(seconds) == {"kto": 84.17 / 42.0}  # the study's DPO run failed: no DPO ratio
    table = peer_compare.markdown([{"date": "d", "commit": "c", "seconds": seconds, "ratios": peer_compare.ratios(seconds)}])
    assert "| d | c | 2.00x (84 s vs 42 s) | - |" in table
