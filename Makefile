# The two commands of the README: `make run` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
ARGS ?= model=gan data=mnist

.PHONY: run test install clean

$(BIN)/activate: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(BIN)/activate

install: $(BIN)/activate

run: install
	$(BIN)/python -m aigc.run $(ARGS)

test: install
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) logs mlflow.db mlartifacts
