# casemail: `make run` starts the daemon on the embedded defaults, `make test` runs every test.
# Both set up what they need first (a virtual environment in .venv with casemail and its dependencies).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config.example.toml

.PHONY: run test setup services clean

$(BIN)/casemail: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

setup: $(BIN)/casemail

run: setup
	$(BIN)/casemail -c $(CONFIG) serve

# System packages the test suite drives (Dovecot for IMAP tests, swaks, libmagic); installed only
# when missing, so a machine that has them is not touched.
services:
	@sh scripts/install-test-services.sh

test: setup services
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) var .pytest_cache .hypothesis
