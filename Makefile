# Two set-up commands for a fresh machine: `make run` and `make test`.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
# The CPU wheel of torch available on these machines; installed first so nothing pulls a CUDA build.
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test venv dev lint bench bench-quick bench-gpu clean

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

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest -q

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
