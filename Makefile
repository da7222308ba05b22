# The two commands of the README: `make demo` (the main job) and `make test` (the whole test suite).
# Each sets up what it needs first (virtual environment, Python packages, the Neo4j launcher) and is idempotent.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NEO4J_PORT ?= 7687
NEO4J_JAR := connectors/neo4j/target/kgemb-neo4j.jar
NEO4J_SRC := connectors/neo4j/pom.xml $(shell find connectors/neo4j/src -type f 2>/dev/null)

.PHONY: setup demo test test-all neo4j lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kgemb needs Python 3.11 or newer: install it and run make with PYTHON=python3.11")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

$(NEO4J_JAR): $(NEO4J_SRC) | $(STAMP)
	@$(BIN)/python -c 'from kgemb.connectors.neo4j_dev import ensure_built; ensure_built()' || { echo "kgemb: could not build the Neo4j dev server (see the line above)"; exit 2; }

demo: $(STAMP)
	$(BIN)/python examples/medical/run.py --out runs/medical
	@echo "kgemb is installed in $(VENV): run 'source $(BIN)/activate' (or call $(BIN)/kgemb) to follow the README's tour"

test: $(STAMP) $(NEO4J_JAR)
	$(BIN)/python -m pytest

test-all: $(STAMP) $(NEO4J_JAR)
	$(BIN)/python -m pytest -m ''

neo4j: $(STAMP) $(NEO4J_JAR)
	NEO4J_PORT=$(NEO4J_PORT) $(BIN)/python -m kgemb.connectors.neo4j_dev

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) connectors/neo4j/target build dist *.egg-info
