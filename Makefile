# Two commands on a fresh machine: `make demo` and `make test`.
# Each creates .venv if missing and (re)installs the project only when
# pyproject.toml, setup.py or the C extension's source changed since the last
# install (the editable install builds vecexplore._native into the source tree).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   ?= demo
PORT   ?= 5006
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?= -n 2 --dist loadgroup

.PHONY: demo test lint bench chromium clean-demo

$(STAMP): pyproject.toml setup.py csrc/native.c
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -U pip setuptools wheel
	$(BIN)/python -m pip install -e '.[all,dev]'
	@touch $(STAMP)

# Debian's Chromium for the browser tests (Playwright's own download does not work offline).
chromium:
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || \
	  ( $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium >/dev/null )

demo: $(STAMP)
	$(BIN)/vecexplore demo --dir $(DEMO) --port $(PORT)

lint: $(STAMP)
	$(BIN)/ruff check .

test: $(STAMP) chromium lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/run.py

clean-demo:
	rm -rf $(DEMO)
