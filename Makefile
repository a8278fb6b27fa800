# `make demo` runs the main job end to end on the tiny built-in model; `make test` runs the test suite.
# Both install the locked dependency set (requirements.lock, every package pinned with its hash) with uv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
UV_VERSION := 0.13.9
# The lock pins torch's CPU build (2.13.0+cpu): uv takes it from the wheel folder pip is pointed at.
PIP_LINKS := $(or $(PIP_FIND_LINKS),$(shell $(PYTHON) -m pip config get global.find-links 2>/dev/null))
export UV_FIND_LINKS ?= $(PIP_LINKS)

.PHONY: demo test lint format lock bench clean tiny-model gpu-bundle

$(BIN)/uv:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q uv==$(UV_VERSION)

# Bytecode compiled at install: with PYTHONDONTWRITEBYTECODE set (CI), every process (each Ray worker) would
# otherwise compile every module it imports, which doubled the test suite's time.
$(STAMP): $(BIN)/uv pyproject.toml requirements.lock
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $(STAMP)

# Re-pin after changing dependencies in pyproject.toml (Python 3.11, this platform).
lock: $(BIN)/uv
	$(BIN)/uv pip compile -q pyproject.toml --extra dev --python-version 3.11 --generate-hashes -o requirements.lock

DEMO_DIR := demo-output
DEMO_PORT ?= 8765
QUERY := What is machine learning?
IMAGE_QUERY := a chart of the quarterly sales
PICTURES := $(wildcard configs/demo/data/images/*.png)

# 1. library: build the tiny random Qwen3 reranker, export it to ONNX, rank the seed's example documents.
# 2. online: start the Serve endpoint on local Ray, send it one rerank request, print the answer, stop it.
# 3. offline: score the sample Parquet dataset with a Ray Data actor pool, print the summary and first rows.
# 4. images: the built-in tiny Qwen3-VL model (made on first use) ranks generated pictures the same three ways.
demo: $(STAMP)
	@echo "== 1. library: tiny model built, exported, scored =="
	$(BIN)/rerank tiny-model $(DEMO_DIR)/tiny-model --overwrite
	$(BIN)/rerank score --model $(DEMO_DIR)/tiny-model --query "$(QUERY)" --documents configs/demo/documents.txt
	@echo "== 2. online: rerank serve on local Ray =="
	@echo '{"query": "$(QUERY)", "documents": ["Machine learning is a subset of AI.", "Pizza is a popular food."], "return_documents": true}' \
	  | configs/demo/ask_endpoint.sh $(BIN) $(DEMO_PORT) $(DEMO_DIR)/serve.log /v1/rerank -- --config configs/demo/serve.yaml
	@echo "== 3. offline: rerank offline on local Ray (Ray Data) =="
	$(BIN)/rerank offline --config configs/demo/offline.yaml
	@echo "== 4. images: the tiny Qwen3-VL model ranks generated pictures (library, endpoint, offline) =="
	$(BIN)/rerank score --model builtin:tiny-qwen3-vl-reranker --query "$(IMAGE_QUERY)" $(foreach p,$(PICTURES),--image $(p))
	@echo '{"model": "qwen3-vl-rerank", "input": {"query": "$(IMAGE_QUERY)", "documents": [{"image": "data:image/png;base64,'"$$(base64 -w0 configs/demo/data/images/green-bars.png)"'"}, {"text": "pizza"}]}}' \
	  | configs/demo/ask_endpoint.sh $(BIN) $(DEMO_PORT) $(DEMO_DIR)/serve-images.log /api/v1/services/rerank/text-rerank/text-rerank \
	  -- --model builtin:tiny-qwen3-vl-reranker
	$(BIN)/rerank offline --config configs/demo/offline_images.yaml

# Two pytest-xdist workers, each taking whole groups of tests (tests/conftest.py: the tests on the session's Ray on
# one, the cluster tests on one, each other module on one). The slowest tests are listed after every run, so the
# suite's budget (10 minutes on 2 cores) stays visible.
test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=15

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/lint-imports

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# Benchmarks (not tests): each prints a Markdown table; the first run builds the 0.6B-shape model (~10 min).
bench: $(STAMP)
	for b in scorer peers int8 serve offline load first_load; do $(BIN)/python bench/$$b.py || exit 1; done

# The GPU box's offline bundle (onnxruntime-gpu, Ray Serve/Data, the web stack) for its Python 3.12, in pieces of at
# most 60 MB under gpu-bundle/part-NN/: carry each, then run bench/gpu/run.sh there (docs/gpu.md).
gpu-bundle: $(STAMP)
	$(BIN)/python bench/gpu/bundle.py --out gpu-bundle

tiny-model: $(STAMP)
	$(BIN)/rerank tiny-model rerank_core/assets/tiny-qwen3-reranker --overwrite

clean:
	rm -rf $(VENV) build *.egg-info
