"""`sluice up` as a user runs it: starts, serves, stops on Ctrl-C leaving no
process behind, and a second start reuses the data of the first."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.cli.nats_server import free_port


def start(home: Path, ports: dict[str, int]) -> tuple[subprocess.Popen, dict[str, int], str, str]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.cli.cli",
            "up",
            "--home",
            str(home),
            "--port",
            str(ports["http"]),
            "--nats-port",
            str(ports["nats"]),
            "--mock-port",
            str(ports["mock"]),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = []
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, "sluice up exited early:\n" + "".join(lines)
        lines.append(line)
        if line.startswith("Ctrl-C stops everything"):
            break
    text = "".join(lines)
    pids = {name: int(pid) for name, pid in re.findall(r"([\w-]+)=(\d+)", text.split("processes", 1)[1])}
    key = re.search(r"demo API key\s+(\S+)", text).group(1)
    return proc, pids, key, text


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()


def stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    return out


def chat(ports: dict[str, int], key: str) -> httpx.Response:
    return httpx.post(
        f"http://127.0.0.1:{ports['http']}/v1/chat/completions",
        json={"model": "demo-model", "messages": [{"role": "user", "content": "hello"}]},
        headers={"authorization": f"Bearer {key}"},
        timeout=20,
    )


def stats(ports: dict[str, int], home: Path) -> str:
    cmd = [
        sys.executable,
        "-m",
        "services.cli.cli",
        "stats",
        "--json",
        "--nats",
        f"nats://127.0.0.1:{ports['nats']}",
        "--creds",
        str(home / "creds" / "admin.json"),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def test_up_serves_stops_cleanly_and_restarts_on_the_same_data(tmp_path: Path) -> None:
    ports = {"http": free_port(), "nats": free_port(), "mock": free_port()}
    proc, pids, key, _ = start(tmp_path, ports)
    try:
        assert (tmp_path / "demo-key").read_text().strip() == key
        assert set(pids) >= {"pipeline", "redact", "cache", "sink", "ingress", "mock-upstream", "nats-server"}
        assert chat(ports, key).status_code == 200
        admin_key_file = tmp_path / "admin-key"
        assert admin_key_file.stat().st_mode & 0o777 == 0o600
        admin_key = admin_key_file.read_text().strip()
        made = admin(ports, admin_key, "POST", "/keys", json={"tenant": "demo", "name": "made-over-the-api"})
        assert made.status_code == 201
        api_secret = made.json()["secret"]
        deadline = time.monotonic() + 15
        while '"requests": 1' not in stats(ports, tmp_path):
            assert time.monotonic() < deadline, "the request never reached ClickHouse"
            time.sleep(0.2)
    finally:
        out = stop(proc)
    assert "Stopped." in out
    assert not [name for name, pid in pids.items() if alive(pid)]

    proc, _, key_again, text = start(tmp_path, ports)
    try:
        assert key_again == key  # the demo key is kept
        assert chat(ports, key).status_code == 200
        # The admin key is kept, and what the API made survives `sluice up` re-seeding.
        assert (tmp_path / "admin-key").read_text().strip() == admin_key
        assert chat(ports, api_secret).status_code == 200
        names = {k["name"] for k in admin(ports, admin_key, "GET", "/keys").json()}
        assert "made-over-the-api" in names
        deadline = time.monotonic() + 15
        while '"requests": 3' not in stats(ports, tmp_path):  # the first run's row is still there
            assert time.monotonic() < deadline, stats(ports, tmp_path)
            time.sleep(0.2)
        # The REST service and the portal it prints answer as printed.
        rest_url = re.search(r"curl (http://\S+/services/demo-echo/\S+)", text).group(1)
        echoed = httpx.get(rest_url, headers={"authorization": f"Bearer {key}"}, timeout=20)
        seen = echoed.json()
        assert (echoed.status_code, seen["method"], seen["path"]) == (200, "GET", "/rest/echo/items/42")
        portal_url = re.search(r"developer portal\s+(\S+)", text).group(1)
        assert httpx.get(portal_url, timeout=10).headers["location"].startswith("/portal/sign-in")
    finally:
        stop(proc)


def admin(ports: dict[str, int], key: str, method: str, path: str, **kwargs: object) -> httpx.Response:
    url = f"http://127.0.0.1:{ports['http']}/admin/v1{path}"
    return httpx.request(method, url, headers={"authorization": f"Bearer {key}"}, timeout=10, **kwargs)


def attempt(home: Path, ports: dict[str, int]) -> subprocess.CompletedProcess:
    args = ["--home", str(home), "--port", str(ports["http"]), "--nats-port", str(ports["nats"])]
    args += ["--mock-port", str(ports["mock"])]
    return subprocess.run(
        [sys.executable, "-m", "services.cli.cli", "up", *args], capture_output=True, text=True, timeout=60
    )


def test_a_second_up_refuses_taken_ports_and_a_busy_home_and_leaves_the_first_alone(tmp_path: Path) -> None:
    ports = {"http": free_port(), "nats": free_port(), "mock": free_port()}
    first, pids, key, _ = start(tmp_path / "first", ports)
    try:
        fresh = {"http": free_port(), "nats": free_port(), "mock": free_port()}
        cases = [
            (tmp_path / "second", {**fresh, "nats": ports["nats"]}, f"port {ports['nats']} (NATS)", "--nats-port"),
            (tmp_path / "third", {**fresh, "http": ports["http"]}, f"port {ports['http']} (HTTP)", "--port"),
            (tmp_path / "fourth", {**fresh, "mock": ports["mock"]}, f"port {ports['mock']} (mock", "--mock-port"),
            (tmp_path / "first", fresh, "another `sluice up`", "--home"),
        ]
        for home, taken, what, flag in cases:
            second = attempt(home, taken)
            assert second.returncode != 0, second.stdout
            assert what in second.stderr and flag in second.stderr, second.stderr
            assert "Traceback" not in second.stderr
        # The first gateway kept its key, its routes and its processes.
        resp = chat(ports, key)
        assert resp.status_code == 200 and resp.json()["model"] == "demo-model"
        assert all(alive(pid) for pid in pids.values())
    finally:
        stop(first)
    logs = "".join(p.read_text() for p in (tmp_path / "first" / "logs").glob("*.log"))
    assert "Traceback" not in logs  # a clean stop leaves no tracebacks behind
