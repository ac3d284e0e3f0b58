"""Every snippet in the README runs as pasted, against a live `sluice up`.

```python and ```bash blocks are run (ports rewritten to the test's free ones,
`.venv/bin/` to this interpreter's); ```toml blocks must load as a config;
```sh blocks (make up, make test, installing wrk) are the ones that start or
install things, and are not run here.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services import config
from services.cli.nats_server import free_port
from tests.integration.test_sluice_up import start, stop

README = Path(__file__).parents[2] / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)


def blocks(language: str) -> list[str]:
    return [body for lang, body in BLOCK.findall(README.read_text()) if lang == language]


@pytest.fixture(scope="module")
def gateway() -> Iterator[tuple[Path, dict[str, int]]]:
    workdir = Path(tempfile.mkdtemp(prefix="sluice-readme-"))
    ports = {"http": free_port(), "nats": free_port(), "mock": free_port()}
    proc = start(workdir / ".sluice", ports)[0]
    try:
        yield workdir, ports
    finally:
        stop(proc)


def as_here(snippet: str, ports: dict[str, int]) -> str:
    return (
        snippet.replace("127.0.0.1:8080", f"127.0.0.1:{ports['http']}")
        .replace("127.0.0.1:4222", f"127.0.0.1:{ports['nats']}")
        .replace("127.0.0.1:9100", f"127.0.0.1:{ports['mock']}")
        .replace(".venv/bin/", f"{Path(sys.executable).parent}/")
    )


def run(cmd: list[str], workdir: Path, ports: dict[str, int]) -> subprocess.CompletedProcess:
    env = dict(os.environ, SLUICE_NATS_URL=f"nats://127.0.0.1:{ports['nats']}")
    env.pop("SLUICE_NATS_CREDS", None)
    return subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)


def test_the_readme_has_the_snippets_this_test_runs() -> None:
    assert len(blocks("python")) >= 4 and len(blocks("bash")) >= 3 and len(blocks("toml")) >= 2


@pytest.mark.parametrize("index", range(len(blocks("python"))))
def test_python_snippets_run_as_pasted(gateway: tuple[Path, dict[str, int]], index: int) -> None:
    workdir, ports = gateway
    done = run([sys.executable, "-c", as_here(blocks("python")[index], ports)], workdir, ports)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip(), "the snippet printed nothing"


@pytest.mark.parametrize("index", range(len(blocks("bash"))))
def test_shell_snippets_run_as_pasted(gateway: tuple[Path, dict[str, int]], index: int) -> None:
    workdir, ports = gateway
    done = run(["bash", "-e", "-o", "pipefail", "-c", as_here(blocks("bash")[index], ports)], workdir, ports)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() and '"error"' not in done.stdout, done.stdout[:500]  # no JSON error answer


@pytest.mark.parametrize("index", range(len(blocks("toml"))))
def test_config_snippets_load_as_a_config(tmp_path: Path, index: int) -> None:
    path = tmp_path / "snippet.toml"
    path.write_text(blocks("toml")[index])
    loaded = config.load(path)  # alert rules and webhooks are checked here
    records = config.control_records(loaded)
    # [[services]] and [portal] configure what no route, tenant or alert shows.
    configured = records.routes or loaded.alerts or records.tenants or records.services
    assert configured or loaded.portal != config.Config().portal, "a config snippet that configures nothing"
