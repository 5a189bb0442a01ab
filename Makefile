# Quickstart:  make run   (install + whole pipeline on the built-in corpus)
#              make test  (install test deps + whole test suite)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# CPU wheel of torch first and explicitly: a bare `torch` requirement would pull a multi-GB CUDA build.
TORCH  ?= torch==2.13.0

.PHONY: install install-test run test test-slow clean

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
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m pytest -q -m "not slow" tests

# real servers, fresh virtualenvs, signals: slower, so a separate step (.ci/run runs it after `make test`)
test-slow: install
	PREFECT_SERVER_ANALYTICS_ENABLED=false $(BIN)/python -m pytest -q -m slow tests

clean:
	rm -rf runs mlflow.db mlartifacts .pytest_cache
