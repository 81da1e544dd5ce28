# Two set-up commands for a fresh machine: `make run` and `make test`.
# Docs: `make docs` (build into build/site), `make docs-serve` (live preview), `make docs-gen` (regenerate
# the reference tables from the code: settings, CLI, catalog, endpoints; run it after changing any of them).
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
# The CPU wheel of torch available on these machines; installed first so nothing pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test venv dev lint bench bench-quick bench-gpu clean docs docs-serve docs-gen

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

venv: $(VENV)/.installed
dev: $(VENV)/.installed-dev

run: $(VENV)/.installed
	$(BIN)/jinaserve serve --host $(HOST) --port $(PORT)

# The documentation is built first (--strict: a broken link or anchor fails), then the test suite.
test: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	$(BIN)/python -m pytest -q

docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

docs-serve: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

docs-gen: $(VENV)/.installed
	$(BIN)/python -m jinaserve.docs_gen

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests benchmarks examples

# `make bench`: the like-for-like run (3 interleaved rounds; Infinity in its own venv; int8 quality; real-size
# models and reranker-v3 100×2k) → benchmarks/results/latest.md + latest.json. `make bench-quick`: 1 round,
# 1 s cells, no Infinity / real-size models → results/quick.md. `make bench BENCH_ARGS="--engines st,jinaserve"`.
# `make bench-gpu`: real-size models on a CUDA GPU vs Infinity (refuses without CUDA) → results/gpu.md.
bench: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.run_all $(BENCH_ARGS)

bench-quick: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.run_all --quick $(BENCH_ARGS)

bench-gpu: $(VENV)/.installed-dev
	$(BIN)/python -m benchmarks.gpu $(BENCH_ARGS)

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
