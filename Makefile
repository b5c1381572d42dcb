# One entry point: `make demo` runs the main job, `make test` the gate then the tests, `make check`
# the gate alone (ruff, mypy; configured in pyproject.toml). All build .venv first.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt | cksum | cut -d' ' -f1)
# The project itself, installed editable over the pinned stack; redone (cheaply) when pyproject.toml changes.
PROJECT := $(VENV)/.project-installed

# The demo runs where the federation is meant to pay and, over 5 seeds, does: meters without labels
# (ItalyPowerDemand daily load), each meter's data through its own shift, 30 rounds (README, first section).
DEMO_ARGS ?= --task italy-power --device-shift 0.5 --rounds 30

.PHONY: demo test check bench clean-venv firmware-size
demo: $(PROJECT)
	$(BIN)/python -m simulator run $(DEMO_ARGS) $(ARGS)

test: check
	$(BIN)/python -m pytest -q $(ARGS)

check: $(PROJECT)
	$(BIN)/ruff check .
	$(BIN)/mypy

$(PROJECT): $(STAMP) pyproject.toml
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(STAMP): requirements.txt
	@command -v $(PY) >/dev/null 2>&1 || { echo "error: $(PY) not found. DMSKD pins tensorflow 2.15, which needs Python 3.11: install it (pyenv install 3.11, or apt-get install python3.11) or run 'make PY=/path/to/python3.11 ...'"; exit 1; }
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' || { echo "error: $(PY) is Python $$($(PY) -c 'import platform; print(platform.python_version())'); tensorflow 2.15 needs 3.11: run 'make PY=/path/to/python3.11 ...'"; exit 1; }
	rm -rf $(VENV)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

# The firmware core's flash and RAM on a Cortex-M4F (arm-none-eabi-gcc; Monocypher's source fetched once).
firmware-size: $(PROJECT)
	PYTHON=$(BIN)/python scripts/fetch_monocypher.sh firmware_stubs/build/monocypher
	$(BIN)/python scripts/firmware_size.py

clean-venv:
	rm -rf $(VENV)
