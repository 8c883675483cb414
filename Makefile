# dil_causal developer commands. Needs only python3 and make: everything else goes into .venv.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
# Never let a test or a notebook reach a hub.
export HF_HUB_OFFLINE := 1
export MPLBACKEND := Agg
TORCH_PIN := torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: install demo lab test check-export check-clean check-readme nbtest pytest docs readme lock clean help

help:
	@echo "make install  create .venv (if missing) and install dil_causal with its dev tools and Dask (idempotent)"
	@echo "make demo     install, then train ERM and DIL_sf on the embedded photos and compare them"
	@echo "make lab      install, then open JupyterLab on the tutorials (nbs/tutorials/)"
	@echo "make test     install, then: export and clean leave no diff, README is current, nbdev_test, pytest"
	@echo "make docs     build the docs into _docs/ (Quarto site if quarto is on PATH, else an HTML preview)"

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

# torch is installed first and pinned: an open torch requirement on a bare machine pulls a multi-GB CUDA build.
$(STAMP): $(VENV)/bin/python settings.ini setup.py constraints.txt
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install $(TORCH_PIN)
	$(BIN)/python -m pip install -c constraints.txt -e ".[dev,cluster]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/dil-causal demo

# The tutorials' explorers are ipywidgets; JupyterLab 4 renders them with no extension to build. MPLBACKEND is
# unset so that the kernels draw inline (the Agg exported above is for tests). LAB_ARGS passes options through,
# e.g. make lab LAB_ARGS="--no-browser --ip 0.0.0.0".
lab: install
	cd nbs/tutorials && env -u MPLBACKEND $(BIN)/jupyter lab $(LAB_ARGS) 01_why_networks_fail.ipynb

# nbdev_export and nbdev_clean must leave the tree as committed: the notebooks are the source.
check-export: install
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- dil_causal)" ]; then \
	  git status --porcelain -- dil_causal; git diff --stat -- dil_causal; \
	  echo "nbdev_export changed dil_causal/: edit the notebook, export, commit"; exit 1; fi

check-clean: install
	$(BIN)/nbdev_clean
	@if [ -n "$$(git status --porcelain -- nbs)" ]; then \
	  git status --porcelain -- nbs; echo "nbdev_clean changed nbs/: run nbdev_clean and commit"; exit 1; fi

check-readme: install
	$(BIN)/python .ci/readme.py --check

nbtest: install
	OMP_NUM_THREADS=1 $(BIN)/nbdev_test --n_workers 2 --timing

pytest: install
	OMP_NUM_THREADS=1 $(BIN)/python -m pytest tests/ -v -n 2 --durations=12

test: check-export check-clean check-readme nbtest pytest

readme: install
	$(BIN)/python .ci/readme.py

docs: install
	@if command -v quarto >/dev/null 2>&1; then \
	  $(BIN)/nbdev_docs; \
	else \
	  echo "quarto is not on PATH: building the Quarto-free HTML preview into _docs/"; \
	  $(BIN)/python .ci/docs_preview.py; \
	fi

lock: install
	{ head -n 2 constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^torch=='; echo "$(TORCH_PIN)"; } > constraints.new && mv constraints.new constraints.txt

clean:
	rm -rf _proc _docs runs .pytest_cache
