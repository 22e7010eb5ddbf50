# Two commands do everything on a fresh machine (Python 3.11+):
#   make demo   create .venv, install, run the built-in demo on the embedded broker
#   make test   create .venv, install, lint (ruff, mypy), run the test suite (import contracts included)
#   make lint   ruff and mypy only (configured in pyproject.toml)
#   make docs   build the documentation site into site/ (mkdocs build --strict; offline)
#   make kafka  resolve the pinned Apache Kafka (deploy/kafka/pom.xml) for --broker kafka
#               (needs Java 17+ and Maven; cached in ~/.cache/data-exchange-sim, not here)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean kafka docs

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/exchange run demo --duration 30

docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet
	@echo "site/index.html"

kafka: $(STAMP)
	$(BIN)/exchange kafka fetch

lint: $(STAMP)
	$(BIN)/ruff format --check exchange producers consumers schemas tests deploy docs/hooks
	$(BIN)/ruff check exchange producers consumers schemas tests deploy docs/hooks
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs site .pytest_cache .hypothesis .mypy_cache .ruff_cache .import_linter_cache
