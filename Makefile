# Two commands on a fresh machine: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?= --durations=15
# Two pytest workers (pytest-xdist): CI machines have 2 cores and most tests, the learning tests
# above all, run on one torch thread. A file's tests stay on one worker in the fast half (module
# fixtures are built once); the slow half spreads single tests. `make test XDIST_FAST=
# XDIST_SLOW=` runs everything in one process.
XDIST_FAST ?= -n 2 --dist loadfile
XDIST_SLOW ?= -n 2 --dist load
# One OpenMP thread per worker (and per tool a test starts): two workers of two threads each on a
# 2-core machine spin against each other (measured: the slow half took over 30 min instead of ~12).
# Tests that need more threads set them themselves (the `two_threads` fixture).
TEST_THREADS ?= 1

.PHONY: demo test lint test-fast test-slow test-long test-extras install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch first and pinned: anything that lets pip choose torch freely pulls a CUDA build.
$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[dev,ros,deploy]" torch==2.13.0
	touch $(STAMP)

install: $(STAMP)

# `make demo TASK=mono3d` (or stereo, seg, sr): the other tasks' demos; LiDAR 3D by default.
TASK ?= lidar3d
demo: $(STAMP)
	$(PY) tools/demo.py --task $(TASK)

# The fast suite, then the learning tests (marked slow). pytest's exit code 5 means "no test
# selected", which is not a failure for the slow half while no slow test exists.
test: lint test-fast test-slow

lint: $(STAMP)
	$(PY) -m ruff check perception tools tests configs

test-fast: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -m "not slow" $(XDIST_FAST) $(PYTEST_ARGS)

test-slow: $(STAMP)
	OMP_NUM_THREADS=$(TEST_THREADS) $(PY) -m pytest -m "slow and not long" $(XDIST_SLOW) \
		$(PYTEST_ARGS) || [ $$? -eq 5 ]

# Learning tests that train longer than the CI budget allows (tens of CPU minutes together): run
# them by hand or on a bigger machine; the closing notes report their numbers.
test-long: $(STAMP)
	$(PY) -m pytest -m long $(PYTEST_ARGS) || [ $$? -eq 5 ]

# The tests that need optional extras (nuscenes-devkit, spconv) in a second environment: the
# devkit pins numpy < 2, which the main environment must not inherit. They compare our nuScenes
# metrics and converter with the devkit's, and our voxelisation with spconv's.
EXTRAS_VENV := .venv-extras
EXTRAS_PY := $(EXTRAS_VENV)/bin/python
EXTRAS_STAMP := $(EXTRAS_VENV)/.installed
EXTRAS_TESTS := tests/test_eval_nuscenes.py tests/test_nuscenes_converter.py \
	tests/test_ops_voxelize.py tests/test_extras.py tests/test_sparse_conv.py \
	tests/test_second_encoder.py

$(EXTRAS_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(EXTRAS_VENV)
	$(EXTRAS_PY) -m pip install --quiet torch==2.13.0
	$(EXTRAS_PY) -m pip install --quiet -e ".[dev,nus,lidar]" torch==2.13.0
	touch $(EXTRAS_STAMP)

test-extras: $(EXTRAS_STAMP)
	$(EXTRAS_PY) -c "import nuscenes.eval.detection.algo, spconv.pytorch"  # else tests would skip
	$(EXTRAS_PY) -m pytest -m "not slow" $(PYTEST_ARGS) $(EXTRAS_TESTS)

clean:
	rm -rf $(VENV) $(EXTRAS_VENV) work_dirs .pytest_cache
