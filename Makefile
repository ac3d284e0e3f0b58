# Quick start: `make up`, then `make test`. Both build .venv from the lock.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: up test lint bench bench-tools clean chromium

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[dev]'
	touch $(STAMP)

up: $(STAMP)
	$(BIN)/sluice up

# The dashboard's browser test drives Debian's Chromium (never a downloaded one).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

test: $(STAMP) chromium
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

# The performance table: Sluice against nginx (a fixed-answer upstream),
# side by side with nginx direct, driven by wrk (loadtest/nginx_bench.py).
bench-tools:
	@command -v wrk >/dev/null && test -x /usr/sbin/nginx || { \
	  echo "installing Debian's nginx and wrk for the benchmark"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq nginx wrk >/dev/null; }

bench: $(STAMP) bench-tools
	$(BIN)/python -m loadtest.nginx_bench

clean:
	rm -rf $(VENV) .sluice
