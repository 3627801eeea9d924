# Set-up and entry points. `make test` and `make demo` create .venv when missing and install
# the project with its extras; nothing else needs to be installed by hand. The install uses uv
# (downloads and installs in parallel: about half of pip's time in a fresh clone), and pip
# where uv fails. Packages are byte-compiled at install: where PYTHONDONTWRITEBYTECODE is set,
# Python would otherwise recompile every imported module in every process (each test worker,
# each command-line test).

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
EXTRAS := test,experiments,md

.PHONY: test test-all demo train-cpu lint results-table

# The project's offline data beside the checkout, when it is there and NEQUIP_JAX_DATA is unset
# (the library reads only NEQUIP_JAX_DATA, its arguments and the user cache).
ifneq ($(wildcard ../shared/data),)
export NEQUIP_JAX_DATA ?= $(abspath ../shared/data)
endif

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip uv
	$(VENV)/bin/uv pip install --quiet --python $(PY) --compile-bytecode -e ".[$(EXTRAS)]" \
		|| $(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

# The suite runs in TEST_WORKERS processes (pytest-xdist), one test file per process at a time
# (module fixtures are built once); TEST_WORKERS=0 runs it in this process. Files start
# heaviest first, by the seconds in tests/durations.json (`make test PYTEST_ARGS=
# --store-durations` measures them again). The slowest tests are listed at the end.
TEST_WORKERS ?= 2
PYTEST_ARGS ?=
PYTEST := $(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder --durations=15

test: $(STAMP)
	$(PYTEST) $(PYTEST_ARGS)

test-all: $(STAMP)
	$(PYTEST) -m "" $(PYTEST_ARGS)

train-cpu: $(STAMP)
	$(PY) -m nequip_jax.cli train cpu --workdir runs/train-cpu --evaluate

demo: $(STAMP)
	$(PY) -m experiments.demo --preset cpu --workdir runs/demo

lint: $(STAMP)
	$(PY) -m ruff check nequip_jax gmm experiments tests

results-table: $(STAMP)
	$(PY) -m experiments.results_table
