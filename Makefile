# Two commands: `make run` starts the whole product on embedded defaults, `make test` runs the suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "Pawpost needs Python 3.11 or newer; $(PYTHON) is older. Set PYTHON=python3.11 or newer."; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
		{ echo "Could not create $(VENV). On Debian, install python3-venv (apt-get install python3-venv) and retry."; exit 1; }

$(VENV)/.installed: $(BIN)/python requirements.txt requirements-test.txt
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-test.txt
	@touch $@

run: $(VENV)/.installed
	$(BIN)/python scripts/run_demo.py

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) instance
