# Two commands do everything on a fresh machine (Python 3.11+):
#   make demo   create .venv, install, run the built-in demo on the embedded broker
#   make test   create .venv, install, lint (ruff, mypy), run the test suite (import contracts included)
#   make lint   ruff and mypy only (configured in pyproject.toml)
#   make docs   build the documentation site into site/ (mkdocs build --strict; offline)
#   make compile  optional: build the pure policy core (exchange/policy) into C extensions with mypyc;
#               the .py sources stay the fallback (make uncompile; EXCHANGE_PURE_POLICY=1 per process)
#   make compile-check  the policy tests against the compiled core, then against the source
#   make kafka  resolve the pinned Apache Kafka (deploy/kafka/pom.xml) for --broker kafka
#               (needs Java 17+ and Maven; cached in ~/.cache/data-exchange-sim, not here)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast lint bench clean kafka docs compile uncompile compile-check

# PYTHONWARNINGS: setuptools' notice that an editable install exists (the project's folders are its
# packages) is not news to anyone running make demo
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[test]'
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

# mypyc (from the test extra's mypy) and a C compiler; see docs/performance.md for what it gains
compile: $(STAMP)
	EXCHANGE_COMPILE=1 $(BIN)/python setup.py --quiet build_ext --inplace

uncompile:
	rm -f exchange/policy/*.so exchange/policy__mypyc*.so
	rm -rf build

POLICY_TESTS := tests/test_compiled.py tests/test_policy.py tests/test_grouping.py tests/test_masking.py tests/test_properties.py tests/test_one_source.py tests/test_vocabulary.py
compile-check: compile
	$(BIN)/python -m pytest -q $(POLICY_TESTS)
	EXCHANGE_PURE_POLICY=1 $(BIN)/python -m pytest -q $(POLICY_TESTS)

test: lint
	$(BIN)/python -m pytest

test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "not slow"

clean: uncompile
	rm -rf $(VENV) runs site .pytest_cache .hypothesis .mypy_cache .ruff_cache .import_linter_cache
