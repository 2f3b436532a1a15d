"""The study's published judgment files, rebuilt from the per-question scores fedbench ships (figures only).

Each line gets the study's schema with placeholder question and answer texts and a judge reply written so
that the study's parse rule reads exactly the published scores: a reply whose first line is three scores
where the study's was, and where it was not, a reply that fails fedbench's strict rule the same way
(no leading number, an empty reply, too few numbers, or scores spread over the reply).
"""

from __future__ import annotations

import json
from pathlib import Path

from fedbench.harness.results.published import builtin_rows

FOLDERS = {"mt_bench_1": "mtbench", "vicuna": "vicuna"}


def _reply(row: dict[str, str]) -> str:
    scores = [row["score1"], row["score2"], row["score3"]]
    note = row["note"]
    if row["first_line_is_scores"] == "yes":
        return " ".join(scores) + "\nAll three answers are relevant; the explanation follows the scores."
    if "empty" in note:
        return ""
    if "does not start" in note:
        return "The three assistants answered; Assistant 1 was brief."
    if "fewer than three" in note:
        return "8 and then 7, nothing more"
    return f"{scores[0]}\nThe second scores {scores[1]} and the third {scores[2]}"


def write_study_files(root: Path) -> list[Path]:
    """One JSONL file per benchmark and judging context under ``root/<mtbench|vicuna>/model_judgement/``."""
    names = {(r["benchmark"], r["judged_together"], int(r["position"])): r["run_name"] for r in builtin_rows("study_run_names")}
    files: dict[Path, list[str]] = {}
    for row in builtin_rows("study_scores"):
        bench, context = row["benchmark"], row["judged_together"]
        ids = [names[(bench, context, i)] for i in (1, 2, 3)]
        line = {"question_id": int(row["question_id"]), "score": [{}, {}, {}], "question_body": f"question {row['question_id']}"}
        for i, model_id in enumerate(ids, start=1):
            line |= {f"answer{i}_body": f"answer of {row[f'answer{i}']}", f"answer{i}_model_id": model_id}
            line |= {f"answer{i}_metadata": {"decoding_method": "top_p_sampling"}}
        line |= {"pred_id": f"{context}-{row['question_id']}", "pred_text": _reply(row), "pred_model_id": "JudgeLM-13B-v1.0"}
        line |= {"tstamp": 1733289971.0 + int(row["question_id"])}
        path = root / FOLDERS[bench] / "model_judgement" / f"{context}.jsonl"
        files.setdefault(path, []).append(json.dumps(line))
    for path, lines in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return sorted(files)
