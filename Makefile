# Quick start: `make demo` and `make test`; each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test bench soak lint diagrams docs clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(VENV)/.installed $@

demo: $(VENV)/.installed
	$(BIN)/turnout demo

test: $(VENV)/.installed-dev
	$(BIN)/python -m ruff check statemachines engine diagrams tests benchmarks
	$(BIN)/python -m mypy
	$(BIN)/python -m pytest

# The benchmarks also run the peer they are measured against (the `bench` extra); `make test`
# does not need it.
$(VENV)/.installed-bench: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev,bench]'
	touch $(VENV)/.installed $(VENV)/.installed-dev $@

bench: $(VENV)/.installed-bench
	TURNOUT_BENCH_POSTGRES_URL="$${TURNOUT_BENCH_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}" \
		$(BIN)/python -m benchmarks

soak: $(VENV)/.installed-dev
	TURNOUT_TEST_POSTGRES_URL="$${TURNOUT_TEST_POSTGRES_URL:-postgresql+psycopg://postgres@127.0.0.1:5432/test}" \
		$(BIN)/python -m pytest tests/soak -m soak -s -p no:cacheprovider

lint: $(VENV)/.installed-dev
	$(BIN)/python -m ruff check statemachines engine diagrams tests benchmarks
	$(BIN)/python -m ruff format --check statemachines engine diagrams tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_code_layout.py

# The documentation site from docs/ (the guide, the API reference from the docstrings, the
# performance notes and the changelog) into build/docs-site; a warning or a broken link fails it.
$(VENV)/.installed-docs: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[docs]'
	touch $(VENV)/.installed $@

docs: $(VENV)/.installed-docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict --quiet -f docs/mkdocs/mkdocs.yml

diagrams: $(VENV)/.installed
	$(BIN)/python -m diagrams.examples docs/diagrams

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .hypothesis turnout.db build

# The example order service (docs/examples/order_service) on http://127.0.0.1:8000, with Redis
# on 127.0.0.1:6379; its README walks through it (docs/examples/order_service/try.sh).
$(VENV)/.installed-example: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[redis]'
	touch $(VENV)/.installed $@

.PHONY: example
example: $(VENV)/.installed-example
	$(BIN)/python -m docs.examples.order_service
