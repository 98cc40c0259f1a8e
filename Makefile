# kpisat — `make help` lists the targets.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
QUARTER ?=
RUN_ARGS ?=

.DEFAULT_GOAL := help

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PY) >/dev/null || { echo "need $(PY) (Python 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[test]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

install: $(STAMP) ## Create .venv with the pinned dependencies

report: $(STAMP) ## Run the quarterly report on the sample company
	$(BIN)/kpisat run $(if $(QUARTER),--quarter $(QUARTER)) $(RUN_ARGS)

test: $(STAMP) ## Run the whole test suite (unit, statistical, notebooks)
	$(BIN)/python -m pytest -n 2 -q

sample: $(STAMP) ## Regenerate data/sample from the seeded generator
	$(BIN)/kpisat sample --out data/sample

notebooks: $(STAMP) ## Regenerate notebooks/*.ipynb from their py:percent sources
	$(BIN)/kpisat notebooks --sync

bench: $(STAMP) ## Benchmark the run at company scale (not part of make test)
	$(BIN)/python -m benchmarks.run_bench --scale 50 --out benchmarks/out

lab: $(STAMP) ## Open the notebooks in JupyterLab
	$(BIN)/jupyter lab notebooks/

clean: ## Remove generated reports and caches
	rm -rf reports/20* reports/index.html reports/.failed reports/.staging reports/interactive .cache

.PHONY: help install report test sample notebooks bench lab clean
