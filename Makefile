# Every target creates ./.venv and installs skipseq into it when missing,
# so a fresh clone needs nothing installed by hand.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# TensorFlow's C++ logging hides real messages: keep its errors only.
# (TensorFlow 2.21 still prints a few start-up lines before it reads this.)
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONUNBUFFERED := 1
# Read datasets from the offline mirror next to the checkout when it exists.
ifneq ($(wildcard ../shared/data/README.md),)
export SKIPSEQ_DATA_DIR ?= $(abspath ../shared/data)
endif

.PHONY: venv test test-all lint format demo bench clean

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest -q -m "not slow" --durations=15

test-all: lint
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/python -m recipes.demo

clean:
	rm -rf $(VENV) build *.egg-info
