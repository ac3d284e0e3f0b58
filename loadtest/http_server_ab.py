"""uvicorn against other HTTP servers for the ingress, on the same gateway.

Starts Sluice as `make bench` does (nginx as the upstream), then more
ingress processes beside the supervisor's uvicorn one, on the same bus,
with the same environment: under ``loadtest.lean_asgi_server`` (a bare
ASGI server on httptools, what a server of our own could save at most),
and under granian (ASGI, uvloop, one worker) when it is installed. wrk
drives them in turn, twice, completions and streams, at 1 and 64
connections; the CPU of each front process (granian's worker included) is
read from /proc.

    python -m loadtest.http_server_ab        (pip install granian to add it)

granian is not a dependency of Sluice: this is how the choice of server was
measured (issue 13, and issue 29 for the bare server), kept so it can be
measured again.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from loadtest import nginx_bench as nb
from loadtest.bench import LUA, cpu_seconds, run_wrk, wait_for_port
from services.cli.nats_server import free_port

APP = """
from ingress.app import IngressApp
from services import config as config_mod
from services.bus import process

process.setup_logging("ingress")
app = IngressApp(config_mod.settings_from_env())
"""


def family_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (granian's worker)."""
    total = cpu_seconds(pid)
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        total += family_cpu(int(child))
    return total


def start_granian(env: dict[str, str], cwd: Path, home: Path) -> tuple[subprocess.Popen, int]:
    (home / "granian_app.py").write_text(APP)
    env = env | {"SLUICE_PROCESS_NAME": "ingress-9", "PYTHONPATH": f"{cwd}:{home}"}
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "granian"), "--interface", "asgi", "--host", "127.0.0.1",
           "--port", str(port), "--loop", "uvloop", "--workers", "1", "--no-ws", "--log-level", "warning",
           "granian_app:app"]  # fmt: skip
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, port
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("granian did not start") from None
            time.sleep(0.2)


def start_lean(env: dict[str, str], cwd: Path) -> tuple[subprocess.Popen, int]:
    env = env | {"SLUICE_PROCESS_NAME": "ingress-8"}
    port = free_port()
    cmd = [sys.executable, "-m", "loadtest.lean_asgi_server", "--port", str(port)]
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_port(port, proc, "the bare server", 20)
    return proc, port


def main() -> int:
    has_granian = shutil.which("granian", path=str(Path(sys.executable).parent)) is not None
    root = Path(tempfile.mkdtemp(prefix="sluice-http-ab-"))
    try:
        with nb.nginx(root / "nginx") as ngx, nb.sluice(root / "sluice", ngx) as (layout, sup):
            started: list[subprocess.Popen] = []
            try:
                pids = sup.pids()
                ingress = pids["ingress"]
                raw_env = Path(f"/proc/{ingress}/environ").read_bytes().decode().split("\0")
                env = dict(item.split("=", 1) for item in raw_env if "=" in item)
                cwd = Path(f"/proc/{ingress}/cwd").resolve()
                servers = {"uvicorn": (layout.http_port, ingress)}
                lean, port = start_lean(env, cwd)
                started.append(lean)
                servers["bare"] = (port, lean.pid)
                if has_granian:
                    granian, port = start_granian(env, cwd, layout.home)
                    started.append(granian)
                    servers["granian"] = (port, granian.pid)
                time.sleep(2)
                for stream in (False, True):
                    model = "bench-stream" if stream else "bench-model"
                    script = layout.home / f"chat-{stream}.lua"
                    script.write_text(LUA.format(body=json.dumps(nb.chat_body(model, stream)), key=nb.KEY))
                    for _ in range(2):
                        for name, (server_port, pid) in servers.items():
                            url = f"http://127.0.0.1:{server_port}/v1/chat/completions"
                            for c in (1, 64):
                                run_wrk(url, script, c, 2, {})
                                before = family_cpu(pid)
                                r = run_wrk(url, script, c, 6, {})
                                front = (family_cpu(pid) - before) / max(1, r["requests"]) * 1e6
                                print(
                                    f"{name:8} {'stream' if stream else 'complete':8} c={c:<3} {r['rps']:>7.0f}/s "
                                    f"p50 {r['p50_ms']:.2f} ms p99 {r['p99_ms']:.2f} ms errors {r['errors']} "
                                    f"front CPU {front:.0f} µs/request",
                                    flush=True,
                                )
            finally:
                for proc in started:
                    proc.terminate()
                    proc.wait(5)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
