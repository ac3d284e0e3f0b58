"""The real agent CLIs, run against a gateway on this machine: npm's Codex and Claude Code; and
the MCP side's strangers: the reference MCP server (``@modelcontextprotocol/server-everything``,
an upstream the gateway runs over stdio) and the MCP Inspector's CLI (a client of ``/mcp``).

`make agent-clients` installs the pinned versions into .agent-clients/. Each helper runs its client
non-interactively with a fresh environment (only PATH is inherited, so no real key or proxy leaks in),
a HOME of the caller's, and every update check, telemetry and plugin sync turned off: the only
traffic is to ``base_url``. ``base_url`` is the gateway's root, e.g. ``http://127.0.0.1:8080``:
Codex posts to ``{base_url}/v1/responses``, Claude Code to ``{base_url}/v1/messages?beta=true``.
tests/fixtures/clients/README.md says what each sends.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLIENTS_DIR = ROOT / ".agent-clients"
CODEX_VERSION = "0.171.0"
CLAUDE_CODE_VERSION = "2.1.332"
CODEX_BIN = CLIENTS_DIR / "node_modules" / ".bin" / "codex"  # a Node launcher of the package's native binary
CLAUDE_BIN = CLIENTS_DIR / "node_modules" / ".bin" / "claude"  # the native binary itself
CODEX_KEY_ENV = "SLUICE_API_KEY"  # the variable Codex's provider entry reads its key from (env_key)
MCP_EVERYTHING_VERSION = "2026.8.31"
MCP_INSPECTOR_VERSION = "2.12.0"
# The package's one bin (mcp-server-everything); its first argument picks the transport.
MCP_EVERYTHING_JS = CLIENTS_DIR / "node_modules" / "@modelcontextprotocol" / "server-everything" / "dist" / "index.js"
MCP_INSPECTOR_BIN = CLIENTS_DIR / "node_modules" / ".bin" / "mcp-inspector"


def _version(package: str) -> str | None:
    try:
        return json.loads((CLIENTS_DIR / "node_modules" / package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def codex_installed() -> bool:
    """Codex at its pinned version (`make agent-clients`)."""
    return _version("@openai/codex") == CODEX_VERSION and os.access(CODEX_BIN, os.X_OK)


def installed() -> bool:
    """Both clients at their pinned versions (`make agent-clients`)."""
    return (
        codex_installed()
        and _version("@anthropic-ai/claude-code") == CLAUDE_CODE_VERSION
        and os.access(CLAUDE_BIN, os.X_OK)
    )


def mcp_everything_installed() -> bool:
    """The reference MCP server at its pinned version (`make agent-clients`)."""
    return _version("@modelcontextprotocol/server-everything") == MCP_EVERYTHING_VERSION and MCP_EVERYTHING_JS.is_file()


def mcp_everything_command() -> list[str]:
    """The command that serves the reference MCP server over stdio (what an ``[[mcp_servers]]``
    of transport "stdio" runs). Node by its full path: the gateway's stdio child gets only
    MCP's default environment."""
    node = shutil.which("node") or "node"
    return [node, str(MCP_EVERYTHING_JS), "stdio"]


def mcp_inspector_installed() -> bool:
    """The MCP Inspector at its pinned version (`make agent-clients`)."""
    return _version("@modelcontextprotocol/inspector") == MCP_INSPECTOR_VERSION and os.access(
        MCP_INSPECTOR_BIN, os.X_OK
    )


def mcp_inspector_cli(url: str, api_key: str, home: Path, timeout_s: float, method: str = "tools/list",
                      extra_args: Sequence[str] = ()) -> subprocess.CompletedProcess[str]:
    """``mcp-inspector --cli URL --transport http --method METHOD`` with the key as a bearer
    header; its answer (the method's result as JSON) is on stdout. Its catalog file goes
    under ``home`` (it writes ~/.mcp-inspector/mcp.json)."""
    cmd = [str(MCP_INSPECTOR_BIN), "--cli", url, "--transport", "http",
           "--header", f"Authorization: Bearer {api_key}", "--method", method, *extra_args]
    return _run(cmd, _env(home, {}), home, timeout_s)


def _env(home: Path, extra: dict[str, str]) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "NO_PROXY": "127.0.0.1,localhost",
        **extra,
    }


def _run(
    cmd: list[str], env: dict[str, str], cwd: Path, timeout_s: float, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Runs in a process group of its own, so a timeout ends the client and every command it started."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(stdin, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(proc.pid, sig)
                proc.communicate(timeout=5)
                break
            except (ProcessLookupError, subprocess.TimeoutExpired):
                continue
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def codex_config(base_url: str, model: str, sandbox: str = "read-only", max_retries: int = 0) -> str:
    """CODEX_HOME/config.toml: one custom provider (the gateway) and nothing that reaches anywhere else."""
    q = json.dumps  # a JSON string is a TOML basic string
    return f"""model = {q(model)}
model_provider = "sluice"
approval_policy = "never"
sandbox_mode = {q(sandbox)}
check_for_update_on_startup = false

[analytics]
enabled = false

[feedback]
enabled = false

[history]
persistence = "none"

[features]
plugins = false  # else a curated-plugin sync tries github.com, api.github.com and chatgpt.com

[model_providers.sluice]
name = "Sluice"
base_url = {q(base_url.rstrip("/") + "/v1")}
env_key = {q(CODEX_KEY_ENV)}
wire_api = "responses"
request_max_retries = {max_retries}
stream_max_retries = {max_retries}
"""


def codex_exec(base_url: str, api_key: str, model: str, prompt: str, home: Path, timeout_s: float,
               extra_args: Sequence[str] = (), *, cwd: Path | None = None, sandbox: str = "read-only",
               max_retries: int = 0, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`codex exec PROMPT` in ``cwd`` (default ``home``); the last answer is on stdout, the log on stderr.

    ``approval_policy = "never"`` with the read-only sandbox runs the model's read-only commands
    without asking. Codex's defaults retry a failing request 4 times and a broken stream 5 times
    (30 requests over ~25 s for a steady 500); ``max_retries`` sets both. ``env`` adds variables.
    """
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(codex_config(base_url, model, sandbox, max_retries))
    run_env = _env(home, {"CODEX_HOME": str(codex_home), CODEX_KEY_ENV: api_key, **(env or {})})
    cmd = [str(CODEX_BIN), "exec", "--skip-git-repo-check", "--color", "never", *extra_args, "--", prompt]
    return _run(cmd, run_env, cwd or home, timeout_s)


def claude_print(base_url: str, api_key: str, model: str, prompt: str, home: Path, timeout_s: float,
                 allowed_tools: Sequence[str] = ("Read",), small_model: str | None = None,
                 extra_args: Sequence[str] = (), *, tools: Sequence[str] | None = None, cwd: Path | None = None,
                 max_retries: int = 0, env: Mapping[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`claude -p` with the prompt on stdin, in ``cwd`` (default ``home``); the answer is on stdout.

    ``allowed_tools`` run without asking (others are refused, -p has nobody to ask); ``tools`` narrows
    the tools declared to the model (default: Claude Code's whole set). ANTHROPIC_API_KEY is enough to
    skip login (sent as x-api-key). Claude Code's default retries a 5xx 10 times over ~3 minutes and
    a refused connection until the timeout; ``max_retries`` (CLAUDE_CODE_MAX_RETRIES) bounds it.
    ``env`` adds variables, e.g. CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY=1 (a GET /v1/models at start).
    """
    small = small_model or model
    run_env = _env(home, {
        "ANTHROPIC_BASE_URL": base_url.rstrip("/"),
        "ANTHROPIC_API_KEY": api_key,
        "ANTHROPIC_MODEL": model,
        "ANTHROPIC_SMALL_FAST_MODEL": small,
        "ANTHROPIC_DEFAULT_HAIKU_MODEL": small,
        "CLAUDE_CODE_MAX_RETRIES": str(max_retries),
        # Without these it calls api.anthropic.com itself (telemetry, feature flags, error reports, updates).
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "DISABLE_AUTOUPDATER": "1",
        **(env or {}),
    })
    cmd = [str(CLAUDE_BIN), "-p"]
    if allowed_tools:
        cmd += ["--allowedTools", ",".join(allowed_tools)]
    if tools is not None:
        cmd += ["--tools", ",".join(tools)]
    return _run([*cmd, *extra_args], run_env, cwd or home, timeout_s, stdin=prompt)
