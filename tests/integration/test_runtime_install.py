"""The runtime as `make up` installs it, on its own: a copy of this checkout
gets a new virtualenv from the Makefile's runtime step (the project and the
lock, the engine without the dependencies it never loads), none of the test
or benchmark tools come with it, and `sluice up` from that virtualenv serves
a chat completion."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx

from services.cli.nats_server import free_port

ROOT = Path(__file__).resolve().parents[2]
# Only `make test` brings these: the test tools, the SDKs the tests drive, and the engine's declared
# dependencies that Sluice never loads.
NOT_AT_RUNTIME = {"pytest", "openai", "anthropic", "playwright", "schemathesis", "hypothesis", "ruff"}
NOT_LOADED = {"pandas", "numpy", "plotly", "chdb-core", "opentelemetry-sdk"}
# Not copied: the checkout's own virtualenv, history, data and what the tests and benches made (.gitignore's).
NOT_COPIED = (
    ".venv", ".git", ".sluice", ".agent-clients", "node_modules", "__pycache__", ".pytest_cache", ".ruff_cache",
    ".hypothesis", "test-artifacts", "*.egg-info", "results", "build",
)  # fmt: skip

# Run by the new virtualenv's Python: the modules of the copy (the project's and its venv's) that
# the processes `sluice up` starts import, and that have no bytecode.
LOADED_UNCOMPILED = """
import os, sys
import analytics.sink, ingress.__main__, loadtest.mock_upstream.__main__, workers.cache, workers.pipeline
import workers.redaction
root = sys.argv[1]
for m in list(sys.modules.values()):
    source = getattr(m, "__file__", None) or ""
    if source.startswith(root) and source.endswith(".py") and not os.path.exists(m.__cached__ or ""):
        print(m.__name__)
"""


def installed(venv: Path) -> set[str]:
    out = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"], capture_output=True, text=True
    ).stdout
    return {line.split("==")[0].lower() for line in out.splitlines() if "==" in line}


def test_make_up_installs_the_runtime_alone_and_serves_from_it(tmp_path: Path) -> None:
    repo = tmp_path / "sluice"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(*NOT_COPIED))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    env["PY"] = shutil.which("python3") or "python3"
    made = subprocess.run(["make", "-C", str(repo), ".venv/.runtime"], env=env, capture_output=True, text=True)
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    venv = repo / ".venv"
    have = installed(venv)
    assert {"chdb-core-lite", "clickhouse-connect", "nats-py", "msgspec", "quicktok-v1"} <= have
    assert not have & NOT_AT_RUNTIME, sorted(have & NOT_AT_RUNTIME)
    assert not have & NOT_LOADED, sorted(have & NOT_LOADED)
    # Every module the processes load was compiled by the install: where PYTHONDONTWRITEBYTECODE is set
    # (this machine, many container images) one that was not is compiled again at every process start.
    loaded = subprocess.run(
        [str(venv / "bin" / "python"), "-c", LOADED_UNCOMPILED, str(repo)],
        env={**env, "PYTHONDONTWRITEBYTECODE": "1"}, cwd=repo, capture_output=True, text=True,
    )  # fmt: skip
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.split() == [], loaded.stdout[:3000]

    ports = {"http": free_port(), "nats": free_port(), "mock": free_port()}
    flags = ["--home", str(tmp_path / "home"), "--port", str(ports["http"])]
    flags += ["--nats-port", str(ports["nats"]), "--mock-port", str(ports["mock"])]
    log = (tmp_path / "up.log").open("w")
    up = subprocess.Popen([str(venv / "bin" / "sluice"), "up", *flags], cwd=repo, env=env, stdout=log, stderr=log)
    try:
        base = f"http://127.0.0.1:{ports['http']}"
        deadline = time.monotonic() + 120
        while True:
            assert up.poll() is None, (tmp_path / "up.log").read_text()[-3000:]
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, (tmp_path / "up.log").read_text()[-3000:]
            time.sleep(0.5)
        key = (tmp_path / "home" / "demo-key").read_text().strip()
        answer = httpx.post(
            f"{base}/v1/chat/completions",
            json={"model": "demo-model", "messages": [{"role": "user", "content": "from the runtime alone"}]},
            headers={"authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"], answer.text
    finally:
        up.send_signal(signal.SIGTERM)
        up.wait(timeout=60)
        log.close()
