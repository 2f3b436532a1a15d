"""Loaders and row validation: every source maps onto one schema, every bad row is named."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from fedbench.harness.data import FEDCHATBOTPA_FILE, load_pairs, unpair, validate_rows
from fedbench.harness.errors import FedbenchError

GOOD = {"id": "a", "client_id": "u1", "prompt": "p", "chosen": "c", "rejected": "r"}


def _jsonl(path: Path, rows: list) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({k: v for k, v in GOOD.items() if k != "chosen"}, "missing field 'chosen'"),
        (GOOD | {"rejected": "   "}, "field 'rejected' is empty"),
        (GOOD | {"prompt": 7}, "field 'prompt' must be a string, got int"),
        (GOOD | {"client_id": ["u"]}, "field 'client_id' must be a string, got list"),
    ],
)
def test_malformed_row_is_named_with_file_and_row(tmp_path: Path, row: dict, message: str) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [GOOD | {"id": "ok"}, row])
    with pytest.raises(FedbenchError) as err:
        load_pairs(str(path))
    assert f"{path}, row 2: {message}" in err.value.problem
    assert err.value.fix


def test_duplicate_id_is_refused(tmp_path: Path) -> None:
    path = _jsonl(tmp_path / "d.jsonl", [GOOD, GOOD])
    with pytest.raises(FedbenchError, match=r"row 2: duplicate id 'a' \(first seen in row 1\)"):
        load_pairs(str(path))


def test_empty_invalid_and_missing_files(tmp_path: Path) -> None:
    empty = tmp_path / "e.jsonl"
    empty.write_text("")
    with pytest.raises(FedbenchError, match="the file is empty"):
        load_pairs(str(empty))
    broken = tmp_path / "b.json"
    broken.write_text('[{"prompt": "x",')
    with pytest.raises(FedbenchError, match="not valid JSON"):
        load_pairs(str(broken))
    bad_line = tmp_path / "b.jsonl"
    bad_line.write_text(json.dumps(GOOD) + "\n{oops\n")
    with pytest.raises(FedbenchError, match="row 2: not valid JSON"):
        load_pairs(str(bad_line))
    with pytest.raises(FedbenchError, match="does not exist"):
        load_pairs(str(tmp_path / "nope.jsonl"))


def test_json_parquet_and_column_mapping(tmp_path: Path) -> None:
    rows = [GOOD, GOOD | {"id": "b", "client_id": 3}]
    as_json = tmp_path / "d.json"
    as_json.write_text(json.dumps(rows))
    pairs = load_pairs(str(as_json))
    assert [p.client_id for p in pairs] == ["u1", "3"]

    import pyarrow as pa
    import pyarrow.parquet as pq

    renamed = [{"q": r["prompt"], "good": r["chosen"], "bad": r["rejected"], "user": str(r["client_id"])} for r in rows]
    pq.write_table(pa.Table.from_pylist(renamed), tmp_path / "d.parquet")
    mapped = load_pairs(str(tmp_path / "d.parquet"), {"prompt": "q", "chosen": "good", "rejected": "bad", "client_id": "user"})
    assert [(p.id, p.prompt, p.chosen, p.client_id) for p in mapped] == [("1", "p", "c", "u1"), ("2", "p", "c", "3")]


def test_fedchatbotpa_format(tmp_path: Path) -> None:
    """The released Fed-ChatbotPA file: an object mapping each user to its list of DPO records."""
    records = {
        "u17": [
            {"prompt": "Explain tides.", "chosen": "The moon's gravity...", "rejected": "No."},
            {"prompt": "Name a prime.", "chosen": "7 is prime.", "rejected": "8."},
        ],
        "u02": [{"prompt": "Say hi.", "chosen": "Hi!", "rejected": "..."}],
    }
    path = tmp_path / FEDCHATBOTPA_FILE
    path.write_text(json.dumps(records))
    pairs = load_pairs(f"fedchatbotpa:{path}")
    assert Counter(p.client_id for p in pairs) == {"u17": 2, "u02": 1}
    assert pairs[0].prompt == "Explain tides." and pairs[2].rejected == "..."


def test_hub_id_offline_says_to_pass_a_local_path() -> None:
    with pytest.raises(FedbenchError) as err:
        load_pairs("no-such-org/no-such-dataset")
    assert "cannot load data set 'no-such-org/no-such-dataset'" in err.value.problem
    assert "local" in (err.value.fix or "")


def test_unpair_keeps_both_halves_on_the_pairs_client() -> None:
    pairs = validate_rows([GOOD], "x")
    good, bad = unpair(pairs)
    assert (good.completion, good.label, bad.completion, bad.label) == ("c", True, "r", False)
    assert good.client_id == bad.client_id == "u1"
