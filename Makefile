# cnnlab: `make train` trains, `make test` tests. Both install first if needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
NB_STAMP := $(VENV)/.notebooks
BROWSER_STAMP := $(VENV)/.browser

.DEFAULT_GOAL := help
.PHONY: help install os-datasets data train test test-full browser demo test-notebooks mutation mutation-score bench bench-small-data lint format tensorboard mlflow-ui clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-15s %s\n", $$1, $$2}'

install: $(STAMP)  ## create .venv, install cnnlab with dev extras and the offline Fashion-MNIST

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -e ".[dev]"
	@$(MAKE) --no-print-directory os-datasets
	@touch $(STAMP)

# apt-get install $(1) where apt-get can be used without a password; otherwise say how.
# $(2): what is done without it (the end of a sentence)
define apt_install
if ! command -v apt-get >/dev/null 2>&1; then \
  echo "$(1): no apt-get here; $(2)"; \
elif [ "$$(id -u)" = 0 ]; then \
  (apt-get update -qq && apt-get install -y -qq $(1)) || echo "$(1): apt-get failed; $(2)"; \
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then \
  (sudo apt-get update -qq && sudo apt-get install -y -qq $(1)) || echo "$(1): apt-get failed; $(2)"; \
else \
  echo "$(1): run 'sudo apt-get install $(1)'; $(2)"; \
fi
endef

# Debian ships the full Fashion-MNIST (dataset-fashion-mnist) under /usr/share/datasets
os-datasets:
	@if dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then \
	  echo "Fashion-MNIST: Debian package installed (offline)"; \
	else $(call apt_install,dataset-fashion-mnist,Fashion-MNIST will be downloaded on first use (or run: make data)); fi

data: $(STAMP)  ## fetch and verify datasets ahead of time (DATASETS="mnist cifar10" to choose)
	$(BIN)/python -m cnnlab prepare-data $(DATASETS)

train: $(STAMP)  ## train LeNet-5 on Fashion-MNIST (works offline)
	$(BIN)/python train.py experiment=lenet_fashion $(ARGS)

# One pytest worker per core (pytest-xdist); --dist loadscope keeps each test file on one worker,
# so a file's shared fixtures (a trained run, the bad-input workspace) are made once.
test: $(STAMP)  ## the fast test suite (what CI runs)
	$(BIN)/python -m pytest -m "not slow" -q -n auto --dist loadscope

test-full: $(STAMP) browser  ## every test, including long trainings, the browser test and the notebooks
	$(BIN)/python -m pytest -q
	@$(MAKE) --no-print-directory test-notebooks

# The demo page's extra (Gradio, Playwright) and Debian's chromium, which the browser test drives
# (Playwright's own browser download needs the internet); installed on first use, not by install
$(BROWSER_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --disable-pip-version-check -e ".[demo]"
	@touch $(BROWSER_STAMP)

browser: $(BROWSER_STAMP)  ## the demo extra and Debian's chromium, for the browser test (make test-full)
	@if command -v chromium >/dev/null 2>&1; then \
	  echo "chromium: $$(chromium --version 2>/dev/null | head -1)"; \
	else $(call apt_install,chromium,the browser test will be skipped); fi

demo: $(BROWSER_STAMP)  ## the demo page in the browser: make demo CKPT=<run>/checkpoints/best.ckpt
	$(BIN)/python -m cnnlab demo ckpt_path=$(CKPT) $(ARGS)

# Jupyter (nbmake, ipykernel) is the optional `notebooks` extra, installed on first use
$(NB_STAMP): $(STAMP) pyproject.toml
	$(BIN)/pip install --disable-pip-version-check -e ".[notebooks]"
	@touch $(NB_STAMP)

# Each notebook runs top to bottom in a fresh kernel (10 minutes at most), its runs written
# into a temporary folder (CNNLAB_NOTEBOOK_DIR), never into outputs/ or the tracked tree.
test-notebooks: $(NB_STAMP)  ## execute every notebook in notebooks/ (nbmake), a few minutes each
	@out=$$(mktemp -d); rc=0; limit=$$(command -v timeout >/dev/null && echo "timeout 600"); \
	for nb in notebooks/*.ipynb; do \
	  echo "== $$nb"; \
	  CNNLAB_NOTEBOOK_DIR=$$out $$limit $(BIN)/python -m pytest --nbmake \
	    --nbmake-timeout=600 -p no:cacheprovider -q "$$nb" || rc=1; \
	done; \
	rm -rf "$$out"; exit $$rc

# Mutation testing (mutmut 3, the `mutation` extra): plants small bugs in the core modules one at a
# time and runs the tests that call the changed function; a mutant the tests miss is a gap.
# Slow (hours for the whole core on 2 cores): MUTANTS="cnnlab.compare.* cnnlab.record.*" picks
# modules, JOBS=N runs N mutants at once. Results are kept in mutants/; rm -rf mutants to start over.
mutation: $(STAMP)  ## mutation testing of the core with mutmut, then the score per module (slow)
	@$(BIN)/python -c "import mutmut" 2>/dev/null || $(BIN)/pip install -q -e ".[mutation]"
	-OMP_NUM_THREADS=1 $(BIN)/mutmut run --max-children $(or $(JOBS),1) $(MUTANTS)
	@$(MAKE) --no-print-directory mutation-score

mutation-score:  ## the mutation score per module from the last make mutation (mutants/)
	@$(BIN)/python -m tools.mutation_score $(ARGS)

bench: $(STAMP)  ## throughput and memory: raw loop vs cnnlab vs torchvision pipeline
	$(BIN)/python -m tools.benchmark $(ARGS)

# Small folders of Fashion-MNIST PNGs (100 and 500 per class; 50 and 200 of classes 5-9 for
# transfer), the SVM / logistic-regression baseline on them, the README's train.py runs (three
# seeds each, about an hour on 2 cores), then the table of outputs/small_data/log.jsonl.
bench-small-data: $(STAMP)  ## small-data folders, classical baseline, the recipe's runs, the table (README "Small data")
	$(BIN)/python benchmarks/small_data.py folders
	$(BIN)/python benchmarks/small_data.py baseline
	$(BIN)/python benchmarks/small_data.py measure
	$(BIN)/python benchmarks/small_data.py table

lint: $(STAMP)  ## ruff: lint and format check
	$(BIN)/ruff check src tests tools scripts benchmarks notebooks train.py eval.py
	$(BIN)/ruff format --check src tests tools scripts benchmarks notebooks train.py eval.py

format: $(STAMP)  ## ruff: fix what can be fixed, format
	$(BIN)/ruff check --fix src tests tools scripts benchmarks notebooks train.py eval.py
	$(BIN)/ruff format src tests tools scripts benchmarks notebooks train.py eval.py

tensorboard: $(STAMP)  ## open TensorBoard on every run in outputs/
	$(BIN)/python -m cnnlab tensorboard host=$(or $(HOST),localhost) $(ARGS)

mlflow-ui: $(STAMP)  ## open MLflow's UI on the runs of logger=mlflow (outputs/mlflow.db)
	$(BIN)/python -m cnnlab mlflow-ui host=$(or $(HOST),localhost) port=$(or $(PORT),5000)

clean:  ## remove outputs, caches and the virtualenv (keeps data/)
	rm -rf outputs/train outputs/eval outputs/sweeps outputs/notebooks outputs/mlflow.db outputs/mlflow.db.lock outputs/mlartifacts multirun mutants .pytest_cache .ruff_cache $(VENV)
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
