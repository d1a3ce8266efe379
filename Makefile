# make repro: install everything, then run the default experiment (dvc repro), offline.
# make test:  install everything, then run the test suite.
VENV ?= .venv
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup repro test test-fast bench clean-partial

setup:
	bash scripts/setup.sh

repro: setup
	dvc repro

test: setup
	ruff check
	python -m pytest

test-fast: setup
	ruff check
	python -m pytest -m "not e2e"

clean-partial:
	rm -rf data/.partial models/.partial

bench: setup
	python benchmarks/training.py
