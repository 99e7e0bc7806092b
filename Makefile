# Every target bootstraps .venv from the requirements files by itself: on a fresh clone, with only
# Python 3 and pip, `make demo` and `make test` are all it takes.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TRIAL := $(PY) -m twisted.trial
DEV_STAMP := $(VENV)/.dev-installed
BENCH_STAMP := $(VENV)/.bench-installed
.PHONY: all dev test test-oldest matrix coverage lint format compat stress dists release-check \
	demo doc bench bench-smoke clean

all: lint test

$(DEV_STAMP): requirements.txt requirements-dev.txt setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $@

$(BENCH_STAMP): $(DEV_STAMP) requirements-bench.txt
	$(PY) -m pip install -q -r requirements-bench.txt
	touch $@

dev: $(DEV_STAMP)

# The Redis tests need a redis-server, the PostgreSQL ones PostgreSQL 15: .ci/ensure-redis and
# .ci/ensure-postgres install them where they can (root, apt-get), else they skip, saying how to
# enable them (except under CI=true, where they must run).
test: $(DEV_STAMP)
	bash .ci/ensure-redis
	bash .ci/ensure-postgres
	$(TRIAL) tests

# tox.ini's test environments, on the Pythons this machine has (.ci/matrix says which it skips):
# 3.10 with the oldest Twisted we support, 3.11, 3.12 under pytest, 3.13 with the newest Twisted.
matrix: $(DEV_STAMP)
	bash .ci/ensure-redis
	bash .ci/ensure-postgres
	TOX="$(PY) -m tox" bash .ci/matrix

# The oldest Twisted we support (requirements.txt's floor, pinned in tox.ini), on Python 3.10.
test-oldest: $(DEV_STAMP)
	bash .ci/ensure-redis
	bash .ci/ensure-postgres
	TOX="$(PY) -m tox" bash .ci/matrix py310-oldest

coverage: $(DEV_STAMP)
	bash .ci/ensure-redis
	bash .ci/ensure-postgres
	$(PY) -m coverage erase
	$(PY) -m coverage run -m twisted.trial tests
	$(PY) -m coverage report

# The benchmarks are type-checked too, so lint needs their requirements.
lint: $(BENCH_STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy --strict txrwlock tests examples benchmarks

format: $(DEV_STAMP)
	$(PY) -m ruff check --fix .
	$(PY) -m ruff format .

# The test module of txrwlock 1.1.4, unchanged, against this package.
compat: $(DEV_STAMP)
	$(PY) tests/compat/run_original_suite.py

# The model test with many more programs than the default run.
stress: $(DEV_STAMP)
	TXRWLOCK_HYPOTHESIS_PROFILE=stress $(TRIAL) tests.test_model

dists: $(DEV_STAMP)
	rm -rf dist
	$(PY) -m build --outdir dist .

# What a release needs: both distributions built, their metadata valid for PyPI (twine check),
# each installed in a clean venv and used there (.ci/check-dists).
release-check: dists
	$(PY) -m twine check --strict dist/*
	.ci/check-dists dist

demo: $(DEV_STAMP)
	$(PY) examples/demo.py

doc: $(DEV_STAMP)
	$(PY) -m sphinx -W --keep-going -b html doc/source doc/build/html
	$(PY) -m sphinx -W --keep-going -b doctest doc/source doc/build/doctest

bench: $(BENCH_STAMP)
	$(PY) benchmarks/run.py

bench-smoke: $(BENCH_STAMP)
	$(PY) benchmarks/run.py --smoke

clean:
	rm -rf $(VENV) .tox build dist doc/build *.egg-info _trial_temp* .coverage htmlcov \
	  .hypothesis .mypy_cache .ruff_cache AUTHORS ChangeLog
	find . -name __pycache__ -prune -exec rm -rf {} +
