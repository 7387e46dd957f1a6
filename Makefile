# cortex: the two commands.
#   make demo   set up (first run only), then start a local demo fleet and its console
#   make test   set up (first run only), then lint, type-check and run the whole test suite
#
# Set-up creates .venv with the CPU build of torch. Where PyPI would hand you the CUDA
# build, point TORCH_INDEX at the CPU wheels, e.g.
#   make demo TORCH_INDEX=https://download.pytorch.org/whl/cpu

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
STAMP := $(VENV)/.cortex-installed

.PHONY: setup test-tools demo test lint typecheck format clean

setup: $(STAMP)

$(STAMP): pyproject.toml setup.py
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "cortex needs Python 3.11 or newer; set PYTHON=python3.11" >&2; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -c 'import torch' 2>/dev/null || \
		$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install --quiet -e '.[neuron,dev]'
	touch $@

demo: setup
	$(BIN)/python -m cortex.services.demo_fleet

# Packaging tests need systemd-analyze, rpmbuild and promtool; installed here when possible.
test-tools:
	@packaging/install-test-tools.sh

test: setup test-tools
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy over common/ services/ console/, as cortex.* through the links in .typing/.
typecheck: setup
	$(BIN)/mypy

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .ruff_cache run
