# The two commands of the README: `make run` and `make test`. Each sets up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# written only after a complete install, so an interrupted one is redone
STAMP := $(VENV)/.installed
ARGS ?= model=gan data=mnist
MODEL ?= models:/mnist-gan@champion
PORT ?= 5001

.PHONY: run serve test lint install clean tiny-sd

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python -m aigc.run $(ARGS)

# serve a run's MLflow model from this folder's store (mlflow starts uvicorn from the PATH: the venv's)
serve: install
	PATH="$(abspath $(BIN)):$$PATH" MLFLOW_TRACKING_URI="$${MLFLOW_TRACKING_URI:-sqlite:///$(CURDIR)/mlflow.db}" \
		$(BIN)/mlflow models serve -m "$(MODEL)" --env-manager local --host 127.0.0.1 --port $(PORT)

# two pytest workers: most tests wait on subprocesses (python -m aigc.run), 9.5 -> 7 minutes on 2 cores
test: install
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# ruff's checks and formatting (pyproject.toml [tool.ruff]): zero findings, or CI fails
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) logs mlflow.db mlartifacts

# a tiny random Stable Diffusion pipeline (data/tiny-sd) and 24 captioned scenes (data/tiny-sd-images),
# standing in offline for a real model and your images: docs/stable-diffusion.md
tiny-sd: install
	$(BIN)/python -m tests.helpers.tiny_stable_diffusion data/tiny-sd data/tiny-sd-images
