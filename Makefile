# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: demo test lint test-fast test-slow install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: anything that lets pip choose torch freely pulls a CUDA build.
$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev]" torch==2.13.0
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(PY) tools/demo.py

# The fast suite, then the learning tests (marked slow). pytest's exit code 5 means "no test
# selected", which is not a failure for the slow half while no slow test exists.
test: lint test-fast test-slow

lint: $(STAMP)
	$(PY) -m ruff check perception tools tests configs

test-fast: $(STAMP)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: $(STAMP)
	$(PY) -m pytest -m slow $(PYTEST_ARGS) || [ $$? -eq 5 ]

clean:
	rm -rf $(VENV) work_dirs .pytest_cache
