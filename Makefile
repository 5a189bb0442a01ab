# Quickstart:  make run   (install + whole pipeline on the built-in corpus)
#              make test  (install test deps + whole test suite)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU wheel of torch first and explicitly: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install install-test run test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

run: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/textcls run --config conf/default.yaml --summary runs/summary.json

test: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m pytest -q tests

clean:
	rm -rf runs mlflow.db mlartifacts .pytest_cache
