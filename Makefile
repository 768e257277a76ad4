# The two commands a new user needs:
#   make run   - set everything up and run every pipeline on its default data
#   make test  - set everything up and run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.modelmill-installed

.PHONY: setup run test browser lint checks clean results chaos docs

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test,neural,dask,text]'
	touch $(STAMP)

run: setup
	$(VENV)/bin/modelmill run --all

# The manual, served at http://127.0.0.1:8000 (Material for MkDocs: see docs/architecture.md on
# why it stays, pinned, with its end-of-life notice silenced).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs serve

# Tests write only to temporary directories (TMPDIR is a fresh one per run). Two pytest workers
# already fill both cores: one OpenMP thread each, or gradient boosting's spinning threads
# oversubscribe the machine (seen here: the same two test files 51 s vs 416 s). The 15 slowest
# tests are listed at the end, to keep the suite's time in view.
test: setup browser checks
	@tmp=$$(mktemp -d -t modelmill-test.XXXXXX); \
	TMPDIR=$$tmp OMP_NUM_THREADS=1 $(PY) -m pytest -n 2 --dist loadfile --durations=15 --ignore=tests/test_estimator_checks.py $(PYTEST_ARGS); rc=$$?; \
	rm -rf $$tmp; exit $$rc

# Headless Chromium (Debian's package) for the browser test of the MLflow and Prefect pages:
# installed when missing and this is a Debian machine we may install on (root); elsewhere that
# test is skipped, saying why.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null; } || \
	  echo "headless Chromium is not installed (apt-get install chromium): the browser test will be skipped"

# What holds the code's shape: the architecture's contracts, and scikit-learn's own checks over
# every custom estimator, one line each.
checks: lint
	@tmp=$$(mktemp -d -t modelmill-checks.XXXXXX); \
	TMPDIR=$$tmp OMP_NUM_THREADS=1 $(PY) -m pytest -v -p no:cacheprovider tests/test_estimator_checks.py; rc=$$?; \
	rm -rf $$tmp; exit $$rc

results: setup
	$(PY) scripts/results_table.py

# Fault and hostile-input cases end to end, one table case -> held/failed (needs the mirror).
chaos: setup
	$(PY) scripts/chaos.py

# The architecture's contracts (pyproject.toml [tool.importlinter]) and the style (ruff).
lint: setup
	$(VENV)/bin/lint-imports
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean:
	rm -rf $(VENV) .modelmill
