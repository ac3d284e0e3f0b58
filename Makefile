# Quick start: `make up`, then `make test`. Both build .venv from the lock:
# `make up` the runtime alone, `make test` adds the test tools.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
RUNTIME := $(VENV)/.runtime
STAMP := $(VENV)/.installed
# Installed without the dependencies they declare, which Sluice never loads
# (pandas, numpy: ~145 MB): the embedded ClickHouse (the chdb module, lite
# build, and pyarrow, which it imports) and o200k's vocabulary file.
# pyproject.toml's "embedded" extra is the same set, dependencies and all.
NO_DEPS := chdb-core-lite pyarrow quicktok-v1
# The project's own packages, compiled with the runtime (the mock upstream is in loadtest/).
SOURCES := analytics ingress schemas services workers loadtest

.PHONY: up test lint bench bench-responses bench-mcp bench-rest bench-tasks bench-live bench-tools clean chromium agent-clients

$(RUNTIME): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@# --no-compile here, compileall on both cores below: pip compiles one file at a time.
	$(BIN)/python -m pip install --quiet --no-compile -c requirements.lock -e .
	@# A venv made before the lite engine holds the full one: the two are one module.
	$(BIN)/python -m pip show --quiet chdb-core-lite 2>/dev/null || \
	  $(BIN)/python -m pip uninstall --quiet --yes chdb chdb-core 2>/dev/null || true
	$(BIN)/python -m pip install --quiet --no-compile --no-deps --no-warn-conflicts -c requirements.lock $(NO_DEPS)
	@# Where PYTHONDONTWRITEBYTECODE is set (many container images), a module never compiled is
	@# compiled again at every process start: `import analytics.sink` took 4-5 s, not 1-1.5.
	$(BIN)/python -m compileall -q -j 0 $(VENV)/lib $(SOURCES) >/dev/null
	touch $(RUNTIME)

$(STAMP): $(RUNTIME)
	$(BIN)/python -m pip install --quiet --no-warn-conflicts -c requirements.lock -e '.[dev]'
	touch $(STAMP)

up: $(RUNTIME)
	$(BIN)/sluice up

# The dashboard's browser test drives Debian's Chromium (never a downloaded one).
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq chromium >/dev/null; }

# The real agent CLIs the client tests drive (tests/agent_clients.py): npm's Codex and Claude Code,
# pinned, each shipping its Linux binary, installed into .agent-clients/ (skipped when those versions are there).
# With them, the MCP side's strangers: the reference MCP server (run over stdio by the gateway as an
# upstream) and the MCP Inspector (its CLI lists the gateway's tools). And axe-core, the accessibility
# check the portal's browser test injects into every page it visits.
AGENT_CLIENTS := .agent-clients
CODEX_VERSION := 0.171.0
CLAUDE_CODE_VERSION := 2.1.332
MCP_EVERYTHING_VERSION := 2026.8.31
MCP_INSPECTOR_VERSION := 2.12.0
AXE_CORE_VERSION := 4.14.1

agent-clients:
	@command -v npm >/dev/null || { \
	  echo "installing Debian's npm for the agent clients"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq npm >/dev/null; }
	@v() { node -p "require('./$(AGENT_CLIENTS)/node_modules/$$1/package.json').version" 2>/dev/null; }; \
	[ "$$(v @openai/codex)" = $(CODEX_VERSION) ] && [ "$$(v @anthropic-ai/claude-code)" = $(CLAUDE_CODE_VERSION) ] && \
	[ "$$(v @modelcontextprotocol/server-everything)" = $(MCP_EVERYTHING_VERSION) ] && \
	[ "$$(v @modelcontextprotocol/inspector)" = $(MCP_INSPECTOR_VERSION) ] && \
	[ "$$(v axe-core)" = $(AXE_CORE_VERSION) ] || \
	  npm install --prefix $(AGENT_CLIENTS) --no-audit --no-fund --save-exact \
	    @openai/codex@$(CODEX_VERSION) @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION) \
	    @modelcontextprotocol/server-everything@$(MCP_EVERYTHING_VERSION) \
	    @modelcontextprotocol/inspector@$(MCP_INSPECTOR_VERSION) axe-core@$(AXE_CORE_VERSION)
	@# Claude Code's postinstall puts its native binary in place; an npm that held the script back gets it run here.
	@$(AGENT_CLIENTS)/node_modules/.bin/claude --version >/dev/null 2>&1 || \
	  (cd $(AGENT_CLIENTS)/node_modules/@anthropic-ai/claude-code && node install.cjs)
	@$(AGENT_CLIENTS)/node_modules/.bin/codex --version && $(AGENT_CLIENTS)/node_modules/.bin/claude --version

# Two workers (pytest-xdist), each module whole on one of them; then, alone, the tests marked
# serial (load, kills, timing). Failed tests in the first part do not skip the second (the target
# still fails); an interrupt or a usage error (exit 2 and up) stops there.
test: $(STAMP) chromium agent-clients
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n 2 --dist loadfile -m "not serial"; parallel=$$?; \
	[ $$parallel -le 1 ] || exit $$parallel; \
	$(BIN)/python -m pytest -m serial && exit $$parallel

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

# /v1/responses against /v1/chat/completions, the same nginx (loadtest/responses_bench.py).
bench-responses: $(STAMP) bench-tools
	$(BIN)/python -m loadtest.responses_bench

# MCP tool calls through /mcp against the mock's MCP server called directly, and memory per session (loadtest/mcp_bench.py).
bench-mcp: $(STAMP) bench-tools
	$(BIN)/python -m loadtest.mcp_bench

# A REST service (nginx) through /services/<slug>/ against nginx direct, a 50 MB download, and the portal's
# catalog with 500 APIs (loadtest/rest_bench.py).
bench-rest: $(STAMP) bench-tools
	$(BIN)/python -m loadtest.rest_bench

# Images, audio, moderation and rerank through the gateway against the mock upstream called directly, and a
# 10,000-line batch through the Files and Batch APIs (loadtest/tasks_bench.py; httpx and the openai SDK, no wrk).
bench-tasks: $(STAMP)
	$(BIN)/python -m loadtest.tasks_bench

# N streams of 200 chunks 50 ms apart held open through Sluice against the same streams direct: added delay per
# chunk, memory per open stream, CPU per chunk; a C upstream and a C client, built with cc (loadtest/live_streams_bench.py).
bench-live: $(STAMP)
	$(BIN)/python -m loadtest.live_streams_bench --streams 250,500,1000,2000 --duration 60

clean:
	rm -rf $(VENV) .sluice
