"""Runs the embedded gateway: nats-server, then every stage as its own process.

Stages are started by module name (``python -m workers.policy``); this module
imports none of their code. Each process announces itself on
``sluice.v1.control.ready.<name>`` once it serves, and start-up waits for all.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from services import config as config_mod
from services.runtime import bootstrap, nats_server, process
from services.runtime.nats_server import wait_for_port
from services.runtime.process import READY_PREFIX

log = logging.getLogger("sluice.supervisor")

STAGES = {
    "policy": ["-m", "workers.policy"],
    "redact": ["-m", "workers.redaction"],
    "route": ["-m", "workers.routing"],
    "provider": ["-m", "workers.provider"],
    "sink": ["-m", "analytics.sink"],
}


def _die_with_parent() -> None:
    """Linux: the child gets SIGTERM if the supervisor dies, even by SIGKILL."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Layout(msgspec.Struct):
    home: Path
    config: Path
    nats_port: int = 4222
    http_port: int = 8080
    mock_port: int | None = 9100
    clickhouse_dsn: str | None = None
    # Replicas of the provider stage (the one that waits on upstream I/O).
    provider_replicas: int = 1

    @property
    def nats_url(self) -> str:
        return f"nats://127.0.0.1:{self.nats_port}"

    @property
    def dsn(self) -> str:
        return self.clickhouse_dsn or f"chdb://{self.home / 'clickhouse'}"


class Supervisor:
    def __init__(self, layout: Layout, extra_keys: dict | None = None) -> None:
        self.layout = layout
        self.extra_keys = extra_keys or {}
        self.nats: subprocess.Popen | None = None
        self.children: dict[str, subprocess.Popen] = {}

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SLUICE_NATS_URL=self.layout.nats_url,
            SLUICE_CONFIG=str(self.layout.config),
            SLUICE_CLICKHOUSE_DSN=self.layout.dsn,
            PYTHONUNBUFFERED="1",
        )
        return env

    def _spawn(self, name: str, args: list[str]) -> None:
        logs = self.layout.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{name}.log", "ab") as out:  # the child keeps its own copy
            self.children[name] = subprocess.Popen(
                [sys.executable, *args],
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )

    def start(self, timeout: float = 60.0) -> None:
        cfg = config_mod.load(self.layout.config)
        records = config_mod.control_records(cfg, self.extra_keys)
        self.layout.home.mkdir(parents=True, exist_ok=True)
        self.nats = nats_server.start(self.layout.home / "nats", self.layout.nats_port, self.layout.home / "nats.log")
        try:
            asyncio.run(self._start_stages(records, timeout))
        except BaseException:
            self.stop()
            raise

    async def _start_stages(self, records: config_mod.ControlRecords, timeout: float) -> None:
        nc = await process.connect("supervisor", self.layout.nats_url)
        try:
            await bootstrap.prepare(nc, records)
            ready: set[str] = set()

            async def on_ready(msg) -> None:
                ready.add(msg.subject[len(READY_PREFIX) :])

            await nc.subscribe(READY_PREFIX + "*", cb=on_ready)
            expected = set()
            for name, args in STAGES.items():
                replicas = self.layout.provider_replicas if name == "provider" else 1
                for i in range(replicas):
                    self._spawn(name if i == 0 else f"{name}-{i}", args)
                expected.add(name)
            self._spawn("ingress", ["-m", "ingress", "--port", str(self.layout.http_port)])
            if self.layout.mock_port:
                self._spawn(
                    "mock-upstream",
                    ["-m", "services.runtime.cli", "mock-upstream", "--port", str(self.layout.mock_port)],
                )
            deadline = time.monotonic() + timeout
            while not expected <= ready:
                self._check_children()
                if time.monotonic() > deadline:
                    raise RuntimeError(f"stages not ready after {timeout}s: {sorted(expected - ready)}")
                await asyncio.sleep(0.05)
        finally:
            await nc.close()
        wait_for_port(self.layout.http_port, max(1.0, deadline - time.monotonic()), self.children["ingress"])
        if self.layout.mock_port:
            wait_for_port(self.layout.mock_port, 10, self.children["mock-upstream"])

    def _check_children(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                log_path = self.layout.home / "logs" / f"{name}.log"
                tail = log_path.read_text(errors="replace")[-2000:] if log_path.exists() else ""
                raise RuntimeError(f"{name} exited with {proc.returncode}:\n{tail}")

    def pids(self) -> dict[str, int]:
        out = {name: p.pid for name, p in self.children.items()}
        if self.nats:
            out["nats-server"] = self.nats.pid
        return out

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self.children.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in self.children.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.children.clear()
        if self.nats and self.nats.poll() is None:
            self.nats.send_signal(signal.SIGTERM)
            try:
                self.nats.wait(timeout)
            except subprocess.TimeoutExpired:
                self.nats.kill()
                self.nats.wait()
        self.nats = None

    def wait(self) -> None:
        """Block until a child dies or we are interrupted."""
        while True:
            self._check_children()
            time.sleep(0.5)
