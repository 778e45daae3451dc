# MIROCALS biomarker warehouse. `make demo` and `make test` are the quick start.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home
# The demo's own folders. `make data` and `make demo` delete and write only these, whatever
# MIROCALS_LANDING and MIROCALS_WAREHOUSE say: those may name the real landing zone and warehouse.
DEMO_LANDING := $(CURDIR)/landing
DEMO_WAREHOUSE := $(CURDIR)/warehouse/build/mirocals.duckdb
export MIROCALS_LANDING ?= $(DEMO_LANDING)
export MIROCALS_WAREHOUSE ?= $(DEMO_WAREHOUSE)
SEED ?= 20170615
SCALE ?= 1
GENES ?= 20000
UI_HOST ?= 127.0.0.1
UI_PORT ?= 3000
# `make ui` serves the blinded warehouse's Data Docs site here, so that the UI's links to it open
# (a browser does not follow file:// links from a web page). Runs started while it serves link there.
DOCS_PORT ?= 3001
DATA_DOCS_URL ?= http://$(UI_HOST):$(DOCS_PORT)
# the site beside the warehouse (pipelines/resources.py, Warehouse.data_docs)
DATA_DOCS = $(basename $(MIROCALS_WAREHOUSE))_data_docs

.PHONY: install install-test dagster-home demo data build ui test bench clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip setuptools wheel

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(BIN)/pip install -e '.[test]'
	# Headless Chromium renders the HTML report in its test (Debian's package).
	command -v chromium >/dev/null || { apt-get update && apt-get install -y --no-install-recommends chromium; }
	touch $@

install: $(VENV)/.installed

install-test: $(VENV)/.installed-test

data: install
	rm -rf $(DEMO_LANDING)
	$(BIN)/mirocals demo-data --out $(DEMO_LANDING) --seed $(SEED) --scale $(SCALE) --genes $(GENES)

dagster-home:
	mkdir -p $(DAGSTER_HOME)
	cp dagster.yaml $(DAGSTER_HOME)/dagster.yaml

build: install dagster-home
	MIROCALS_DATA_DOCS_URL=$(DATA_DOCS_URL) $(BIN)/mirocals build --landing $(MIROCALS_LANDING) --warehouse $(MIROCALS_WAREHOUSE)

demo: data
	rm -rf $(DEMO_WAREHOUSE) $(dir $(DEMO_WAREHOUSE)).work $(basename $(DEMO_WAREHOUSE))_data_docs \
		$(dir $(DEMO_WAREHOUSE)).$(notdir $(basename $(DEMO_WAREHOUSE)))_data_docs.validations \
		$(dir $(DEMO_WAREHOUSE)).$(notdir $(basename $(DEMO_WAREHOUSE)))_data_docs.pending
	$(MAKE) --no-print-directory build MIROCALS_LANDING=$(DEMO_LANDING) MIROCALS_WAREHOUSE=$(DEMO_WAREHOUSE)
	@$(BIN)/mirocals next-steps --warehouse $(DEMO_WAREHOUSE)

ui: install dagster-home
	mkdir -p "$(DATA_DOCS)"
	$(BIN)/python -m http.server $(DOCS_PORT) --bind $(UI_HOST) --directory "$(DATA_DOCS)" \
		>"$(DAGSTER_HOME)/data_docs_server.log" 2>&1 & docs=$$!; trap 'kill $$docs' EXIT; \
	echo "Data Docs: $(DATA_DOCS_URL)/index.html"; \
	MIROCALS_DATA_DOCS_URL=$(DATA_DOCS_URL) $(BIN)/dagster dev -m pipelines.definitions -h $(UI_HOST) -p $(UI_PORT)

# Tests make their own Dagster instances; the project's UI history is left alone.
test: install-test
	env -u DAGSTER_HOME $(BIN)/pytest

# `make bench SCALE=N [BENCH_ARGS="--keep --max-rss-mb 16000"]` (SCALE defaults to 5 here, unlike `make data`);
# writes bench/results.json. See bench/README.md.
bench: install
	$(BIN)/python bench/run.py --scale $(if $(filter command line environment,$(origin SCALE)),$(SCALE),5) --genes $(GENES) --seed $(SEED) $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(DAGSTER_HOME) warehouse/build landing
