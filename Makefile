# Two commands do all set-up on a fresh machine (Python 3.10+ with venv):
#   make demo   creates .venv, installs onnxrecede[cpu], prunes the bundled sample model
#   make test   creates .venv, installs onnxrecede[cpu,train,dev] (torch pinned), runs the checks
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH := torch==2.13.0
PYTEST_ARGS ?= -n 2

.PHONY: demo test lint slow clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.cpu: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[cpu]'
	touch $@

$(VENV)/.dev: pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[cpu,train,dev]' $(TORCH)
	touch $@ $(VENV)/.cpu

demo: $(VENV)/.cpu
	mkdir -p out
	$(BIN)/onnxrecede prune samples/resnet_small.onnx --importances samples/resnet_small.imp.json \
		-o out/resnet_small.pruned.onnx --ratio 0.5 --report out/resnet_small.report.json

lint: $(VENV)/.dev
	$(BIN)/ruff check .
	$(BIN)/mypy onnxrecede cli

test: lint
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) -m "not slow"

slow: $(VENV)/.dev
	$(BIN)/python -m pytest -q $(PYTEST_ARGS) -m slow

clean:
	rm -rf $(VENV) out .pytest_cache .mypy_cache .ruff_cache
