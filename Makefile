# Two commands do everything on a fresh machine (Python 3.11+):
#   make demo   create .venv, install, run the built-in demo on the embedded broker
#   make test   create .venv, install, run the test suite
#   make kafka  resolve the pinned Apache Kafka (deploy/kafka/pom.xml) for --broker kafka
#               (needs Java 17+ and Maven; cached in ~/.cache/data-exchange-sim, not here)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast bench clean kafka

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/exchange run demo --duration 30

kafka: $(STAMP)
	$(BIN)/exchange kafka fetch

test: $(STAMP)
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs .pytest_cache .hypothesis
