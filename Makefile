# Meta-Learning, Engineered: the two commands of the README, and the helpers behind them.
#
#   make book     build the rendered book (creates or reuses .venv); prints where index.html is
#   make test     every check CI runs: unit tests, notebooks under nbval (smoke budget),
#                 jupytext pairing + output hygiene, the book build with warnings as errors, and the
#                 browser check of the built book (make browser-check; needs chromium). The unit tests include
#                 tests/test_colab.py: a chapter opened alone, as Colab opens it (make colab runs only that)
#
# Other targets: setup, browser-check, colab, setup-cell, notebook NB=03_metric, notebooks,
# reproduce [ONLY=name] [BUDGET=full], report, notes, bench, clean.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

ifeq ($(origin PYTHON),undefined)
PYTHON := $(shell command -v python3.11 2>/dev/null || command -v python3)
endif
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.mlcore-installed
# A CPU wheel of torch is enough for everything but the full-budget runs. Extra pip arguments
# (e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu") pick where it comes from.
TORCH_VERSION ?= 2.13.0
TORCH_PIP_ARGS ?=

# Omniglot: tests and CI use the shared copy beside the repository when it exists; otherwise
# mlcore looks in ~/.cache/mlcore and downloads the official zips there (sha256-checked).
MLCORE_DATA ?= $(if $(wildcard ../shared/data/omniglot),$(abspath ../shared/data),)
ifneq ($(strip $(MLCORE_DATA)),)
export MLCORE_DATA
endif

# Every tool below (pytest, the notebook kernel, jupyter-book) runs from the virtual environment.
export PATH := $(abspath $(VENV))/bin:$(PATH)
export VIRTUAL_ENV := $(abspath $(VENV))
export PYTHONDONTWRITEBYTECODE := 1
# matplotlib's font cache (default ~/.cache/matplotlib, shared by every venv) stores absolute paths to the fonts
# bundled in the venv that built it: once that venv is deleted (a CI clone), every other venv on the machine
# loses STIX and DejaVu and the notebooks store "findfont" warnings. One cache per venv cannot go stale that way.
export MPLCONFIGDIR := $(abspath $(VENV))/mplconfig

NOTEBOOKS := $(sort $(wildcard notebooks/*.ipynb))
BUDGET ?= full
NB ?=

.PHONY: help setup book browser-check colab setup-cell test unit nbval notebook notebooks reproduce report notes \
	bench clean

help:
	@echo "make book    build the book (prints where index.html is)"
	@echo "make test    run every test (unit, notebooks at smoke budget, hygiene, book with -W, browser check)"
	@echo "make browser-check   open every built page in headless Chromium, offline (after make book)"
	@echo "make colab   run one chapter as Colab does: the notebook alone, mlcore from its setup cell"
	@echo "make setup-cell   stamp tools/setup_cell.py's Colab cell into every notebook"
	@echo "make notebook NB=03_metric   pair + execute (smoke) + sync one chapter"
	@echo "make reproduce [ONLY=name] [BUDGET=full]   regenerate results/ and the README table"
	@echo "make notes   regenerate the appendix book/reproduction-notes.md from results/"
	@echo "make bench   run the benchmarks"

setup: $(STAMP)

$(STAMP): pyproject.toml
	@if [ ! -x "$(PY)" ]; then \
	  echo "creating $(VENV) with $(PYTHON)"; \
	  "$(PYTHON)" -m venv "$(VENV)"; \
	fi
	@if ! "$(PY)" -c "import torch" 2>/dev/null; then \
	  echo "installing torch==$(TORCH_VERSION)"; \
	  $(PIP) install $(TORCH_PIP_ARGS) "torch==$(TORCH_VERSION)"; \
	fi
	$(PIP) install -e ".[book,dev]"
	@touch "$@"

book: setup
	rm -rf _build/html
	jupyter-book build . -W -n --keep-going --all
	@test -f _build/html/index.html || { echo "error: _build/html/index.html was not built" >&2; exit 1; }
	@echo "The book is at $(abspath _build/html/index.html)"

# Every page of the built book in headless Chromium with every non-local request blocked: formulas
# typeset by the book's own MathJax, images loaded, no console errors. Screenshots (1280 and 390 px
# wide) go to _build/screenshots. CHROMIUM=/path/to/chromium picks the browser.
browser-check: setup
	@test -f _build/html/index.html || { echo "error: no book in _build/html; run make book first" >&2; exit 1; }
	python tools/check_book.py --html _build/html --screenshots _build/screenshots

# A chapter opened the way Colab opens it (tests/test_colab.py; also part of `make unit`): a fresh venv without
# mlcore, the setup cell cloning this repository (file://, at HEAD) and installing mlcore, chapter 9 executed
# at the smoke budget from a folder holding only the notebook, its reference numbers checked. About a minute.
colab: setup
	python -m pytest -q -p no:cacheprovider tests/test_colab.py

# The Colab setup cell is written once, in tools/setup_cell.py; this puts it into every notebook (both twins).
setup-cell: setup
	python tools/setup_cell.py

# ruff first: it takes a second, and a lint error is cheaper to read than a test failure it may cause
unit: setup
	ruff check mlcore tests benchmarks tools notebooks
	python -m pytest -q tests

nbval: setup
	@if [ -z "$(NOTEBOOKS)" ]; then \
	  echo "nbval: no notebooks under notebooks/ yet, nothing to execute"; \
	else \
	  MLCORE_BUDGET=smoke python -m pytest -q -p no:cacheprovider --nbval-lax $(NOTEBOOKS); \
	fi

test: setup
	$(MAKE) --no-print-directory unit
	$(MAKE) --no-print-directory nbval
	$(MAKE) --no-print-directory book
	$(MAKE) --no-print-directory browser-check

# Edit notebooks/$(NB).py, then: pair it, execute it at the smoke budget, sync both files.
notebook: setup
	@test -n "$(NB)" || { echo "usage: make notebook NB=03_metric" >&2; exit 2; }
	@test -f "notebooks/$(NB).py" || { echo "no notebooks/$(NB).py" >&2; exit 2; }
	cd notebooks && jupytext --to ipynb "$(NB).py" \
	  && MLCORE_BUDGET=smoke jupyter nbconvert --to notebook --execute --inplace \
	       --ExecutePreprocessor.timeout=600 "$(NB).ipynb" \
	  && jupytext --sync "$(NB).ipynb"

notebooks: setup
	@for f in notebooks/*.py; do \
	  [ -e "$$f" ] || continue; \
	  $(MAKE) --no-print-directory notebook NB=$$(basename "$$f" .py); \
	done

reproduce: setup
	python -m mlcore reproduce $(foreach n,$(ONLY),--only $(n)) --budget $(BUDGET)
	python -m mlcore.report --readme

report: setup
	python -m mlcore.report --readme

# The appendix book/reproduction-notes.md (hardware, budget, steps, what ended training, wall time, commit, date
# of every record), generated from results/*.json; tests/test_book.py fails when it is stale.
notes: setup
	python tools/reproduction_notes.py

bench: setup
	$(PIP) install -q -e ".[bench]"
	@ran=0; for f in benchmarks/*.py; do \
	  [ -e "$$f" ] || continue; \
	  echo "== $$f"; python "$$f"; ran=1; \
	done; [ $$ran = 1 ] || echo "no benchmarks yet"

clean:
	rm -rf _build
