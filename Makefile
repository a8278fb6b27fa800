# `make demo` runs the main job end to end on the tiny built-in model; `make test` runs the test suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench clean tiny-model

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch is installed first and pinned, so no dependency can pull a CUDA build.
$(STAMP): $(BIN)/python pyproject.toml
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

DEMO_DIR := demo-output

# Build the tiny random Qwen3 reranker, export it to ONNX, and rank the seed's example documents with it.
demo: $(STAMP)
	$(BIN)/rerank tiny-model $(DEMO_DIR)/tiny-model --overwrite
	$(BIN)/rerank score --model $(DEMO_DIR)/tiny-model --query "What is machine learning?" --documents configs/demo/documents.txt

test: $(STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python bench/scorer.py

tiny-model: $(STAMP)
	$(BIN)/rerank tiny-model rerank_core/assets/tiny-qwen3-reranker --overwrite

clean:
	rm -rf $(VENV) build *.egg-info
