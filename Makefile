# discovery: set-up, tests, benchmarks and lint. Every target installs what it needs first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The CPU wheel of torch is pinned here (not in pyproject.toml) so pip never pulls a multi-GB CUDA build.
TORCH  := torch==2.13.0
PYTEST_ARGS ?=

PLUGIN := plugins/discovery-chgnet

.PHONY: install run test test-fast bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml $(PLUGIN)/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]' -e $(PLUGIN)
	touch $(STAMP)

# The offline demo: a generated Na/K/Mg cathode pool answered by CHGNet, exports in runs/demo/.
run: install
	$(BIN)/discover run campaigns/demo.yaml

test: install
	$(BIN)/python -m pytest $(PYTEST_ARGS)

test-fast: install
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

bench: install
	$(BIN)/python -m bench

lint: install
	$(BIN)/ruff check discovery tests bench plugins
	$(BIN)/ruff format --check discovery tests bench plugins
	$(BIN)/mypy

format: install
	$(BIN)/ruff format discovery tests bench plugins
	$(BIN)/ruff check --fix discovery tests bench plugins

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build *.egg-info $(PLUGIN)/*.egg-info
