"""Preference examples: one schema, loaders for every supported source, and row validation.

Every source (the built-in demo set, local JSONL/JSON/Parquet, a hub data set, FedLLM-Bench's
Fed-ChatbotPA file) ends up as a list of :class:`PreferencePair`, validated row by row, so
a malformed row fails with its file, row number and reason before any training starts.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from fedbench.harness.errors import FedbenchError

FIELDS = ("prompt", "chosen", "rejected", "client_id")


@dataclass(frozen=True)
class PreferencePair:
    """A prompt with a preferred and a dispreferred response, owned by one client."""

    id: str
    client_id: str
    prompt: str
    chosen: str
    rejected: str


@dataclass(frozen=True)
class LabeledExample:
    """One response labelled desirable or not (KTO's unpaired form), owned by one client."""

    id: str
    client_id: str
    prompt: str
    completion: str
    label: bool


Example: TypeAlias = PreferencePair | LabeledExample

FEDCHATBOTPA_FILE = "chatbotPA_747c_10k.json"
"""FedLLM-Bench's released Fed-ChatbotPA file: a JSON object mapping each client (user) to its list of
``{"prompt", "chosen", "rejected"}`` records, read by FedLLM-Bench's ``get_fed_datasets``."""


def validate_rows(
    rows: Iterable[Mapping[str, Any]], origin: str, columns: Mapping[str, str] | None = None
) -> list[PreferencePair]:
    """Check each row and turn it into a pair; the first bad row raises with its position.

    ``columns`` maps schema fields to the source's own column names. A row without an
    ``id`` gets ``<row number>``; duplicate ids are refused because resume and caching key on them.
    """
    mapping = {f: f for f in FIELDS} | dict(columns or {})
    pairs: list[PreferencePair] = []
    seen: dict[str, int] = {}
    for number, row in enumerate(rows, start=1):
        where = f"{origin}, row {number}"
        if not isinstance(row, Mapping):
            raise FedbenchError(
                f"{where}: expected an object with fields {list(mapping.values())}, got {type(row).__name__}",
                "write one JSON object per row",
            )
        values: dict[str, str] = {}
        for field_name in FIELDS:
            column = mapping[field_name]
            if column not in row:
                raise FedbenchError(
                    f"{where}: missing field '{column}' (has: {', '.join(sorted(map(str, row))) or 'nothing'})",
                    f"add '{column}' to every row, or map your column to '{field_name}' with a column mapping",
                )
            value = row[column]
            if field_name == "client_id" and isinstance(value, int) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str):
                raise FedbenchError(
                    f"{where}: field '{column}' must be a string, got {type(value).__name__} ({value!r:.60})",
                    f"store '{column}' as text",
                )
            if not value.strip():
                raise FedbenchError(f"{where}: field '{column}' is empty", f"remove the row or fill in '{column}'")
            values[field_name] = value
        raw_id = row.get("id", str(number))
        if not isinstance(raw_id, (str, int)) or isinstance(raw_id, bool):
            raise FedbenchError(f"{where}: field 'id' must be a string or integer", "store ids as text")
        pair_id = str(raw_id)
        if pair_id in seen:
            raise FedbenchError(
                f"{where}: duplicate id '{pair_id}' (first seen in row {seen[pair_id]})",
                "give every row a unique 'id', or drop the 'id' field to number rows automatically",
            )
        seen[pair_id] = number
        pairs.append(PreferencePair(id=pair_id, **values))
    if not pairs:
        raise FedbenchError(f"{origin}: no preference pairs found", "point --data at a file with at least one row")
    return pairs


def read_json_rows(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if not text.strip():
        raise FedbenchError(f"{path}: the file is empty", "point --data at a file with preference pairs")
    if path.suffix == ".jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as err:
                raise FedbenchError(
                    f"{path}, row {number}: not valid JSON ({err.msg} at column {err.colno})",
                    "write one JSON object per line",
                ) from err
        return rows
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise FedbenchError(
            f"{path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})",
            "fix the JSON, or use .jsonl with one object per line",
        ) from err
    if isinstance(data, Mapping) and all(isinstance(v, list) for v in data.values()):
        # A dict of client id -> records (Fed-ChatbotPA's layout): the key is the client.
        return [{"client_id": str(cid), **r} if isinstance(r, Mapping) else r for cid, rs in data.items() for r in rs]
    if not isinstance(data, list):
        raise FedbenchError(f"{path}: expected a list of rows, got {type(data).__name__}", "store rows as a JSON list")
    return data


def load_pairs(source: str, columns: Mapping[str, str] | None = None, split: str = "train") -> list[PreferencePair]:
    """Preference pairs from ``demo``, a local file, ``fedchatbotpa:FILE`` or a hub data set id."""
    if source == "demo":
        from fedbench.harness.demo_data import demo_pairs

        return validate_rows(demo_pairs(), "built-in demo data")
    if source.startswith("fedchatbotpa:"):
        path = Path(source.split(":", 1)[1])
        return validate_rows(read_json_rows(_existing(path)), str(path), columns)
    path = Path(source)
    if path.suffix in {".json", ".jsonl", ".parquet"} or path.exists():
        path = _existing(path)
        if path.suffix == ".parquet":
            import pyarrow.parquet as pq

            return validate_rows(pq.read_table(path).to_pylist(), str(path), columns)
        if path.suffix not in {".json", ".jsonl"}:
            raise FedbenchError(f"{path}: unsupported file type '{path.suffix}'", "use .jsonl, .json or .parquet")
        return validate_rows(read_json_rows(path), str(path), columns)
    return _load_hub(source, columns, split)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise FedbenchError(f"data file '{path}' does not exist", "check the path passed to --data")
    return path


def _load_hub(dataset_id: str, columns: Mapping[str, str] | None, split: str) -> list[PreferencePair]:
    import datasets

    try:
        table = datasets.load_dataset(dataset_id, split=split)
    except Exception as err:  # the hub client raises many types for "cannot reach"/"not found"
        raise FedbenchError(
            f"cannot load data set '{dataset_id}' from the hub ({type(err).__name__}: {str(err)[:200]})",
            "check the id, or, offline, download it elsewhere and pass a local .jsonl/.json/.parquet path to --data",
        ) from err
    return validate_rows(table, f"hub:{dataset_id}[{split}]", columns)


def unpair(pairs: Iterable[PreferencePair]) -> list[LabeledExample]:
    """KTO's examples from pairs, as in the study: (prompt, chosen, desirable) and (prompt, rejected, undesirable).

    Both halves stay on the pair's client; a layout decides whether they move.
    """
    out: list[LabeledExample] = []
    for p in pairs:
        out.append(LabeledExample(f"{p.id}+", p.client_id, p.prompt, p.chosen, True))
        out.append(LabeledExample(f"{p.id}-", p.client_id, p.prompt, p.rejected, False))
    return out


def pair_of(example: Example) -> str:
    """The id of the pair an example is or came from: a pair's own id, a labelled half's without :func:`unpair`'s mark.

    A layout that treats the two halves of a pair together (``partial``) groups by it.
    """
    if isinstance(example, PreferencePair):
        return example.id
    return example.id[:-1] if example.id[-1:] in ("+", "-") else example.id


def write_examples(path: Path, examples: Sequence[Example]) -> None:
    """One client's laid-out examples as JSONL, the file a deployment site trains from (``read_examples`` reads it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for ex in examples:
            fh.write(json.dumps(dataclasses.asdict(ex), ensure_ascii=False) + "\n")
    tmp.replace(path)


def read_examples(path: Path) -> list[Example]:
    """A site's own examples: preference pairs (any pair file) or labelled single responses.

    Labelled rows carry ``prompt``, ``completion`` and a boolean ``label`` (KTO's unpaired form,
    as ``write_examples`` stores a redistributed client); every other file is read as pairs.
    """
    path = _existing(Path(path))
    rows = read_json_rows(path) if path.suffix in {".json", ".jsonl"} else None
    if not rows or not all(isinstance(r, Mapping) and "label" in r for r in rows):
        return list(load_pairs(str(path)))
    out: list[Example] = []
    for number, row in enumerate(rows, start=1):
        where = f"{path}, row {number}"
        for name in ("prompt", "completion"):
            if not isinstance(row.get(name), str) or not row[name].strip():
                raise FedbenchError(f"{where}: field '{name}' must be non-empty text", f"fill in '{name}' or remove the row")
        if not isinstance(row["label"], bool):
            raise FedbenchError(
                f"{where}: field 'label' must be true or false, got {row['label']!r:.40}", "store the label as a JSON boolean"
            )
        out.append(
            LabeledExample(
                str(row.get("id", number)), str(row.get("client_id", path.stem)), row["prompt"], row["completion"], row["label"]
            )
        )
    return out
