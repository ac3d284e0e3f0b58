"""The embedded gateway's NATS: one nats-server, or a cluster of nodes on
loopback (``sluice up --cluster 3``), each with its own store, log and
unique name, started, restarted when one exits, and stopped last."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from nats.aio.client import Client

from services.cli import nats_server


class NatsNodes:
    def __init__(self, home: Path, ports: list[int], route_ports: list[int], authorization: Callable[[], str]) -> None:
        """``ports``: each node's client port; ``route_ports``: where the
        nodes of a cluster meet (unused for one node); ``authorization``: the
        users block, read again at each (re)start."""
        self.home, self.ports, self.route_ports = home, ports, route_ports
        self._authorization = authorization
        # A name no other nats-server has: the one answering a port is checked to be ours.
        self._prefix = f"sluice-{os.getpid()}-{time.time_ns()}"
        # One per node, in node order (None: being restarted).
        self.procs: list[subprocess.Popen | None] = []

    @property
    def count(self) -> int:
        return len(self.ports)

    def name(self, index: int) -> str:
        """Node ``index``'s process name: "nats-server", "nats-server-2", ..."""
        return "nats-server" if index == 0 else f"nats-server-{index + 1}"

    def store_dir(self, index: int) -> Path:
        return self.home / ("nats" if index == 0 else f"nats-{index + 1}")

    def server_name(self, index: int) -> str:
        return self._prefix if self.count == 1 else f"{self._prefix}-n{index + 1}"

    def ours(self, answering: str | None) -> bool:
        return answering in {self.server_name(i) for i in range(self.count)}

    def start(self) -> None:
        self.procs = [self._start(i) for i in range(self.count)]

    def _start(self, index: int) -> subprocess.Popen:
        cluster = ""
        if self.count > 1:
            peers = [p for i, p in enumerate(self.route_ports) if i != index]
            cluster = nats_server.cluster_block(self.route_ports[index], peers)
        return nats_server.start(
            self.store_dir(index),
            self.ports[index],
            self.home / f"{self.name(index).replace('nats-server', 'nats')}.log",
            self.server_name(index),
            self._authorization(),
            cluster,
        )

    def restart_exited(self, note: Callable[[str, str], None]) -> None:
        """Start again any node that exited (a cluster's others kept serving)."""
        for index, proc in enumerate(self.procs):
            if proc is not None and proc.poll() is not None:
                note(self.name(index), f"exited with {proc.returncode}; restarting it")
                self.procs[index] = None
                self.procs[index] = self._start(index)

    async def wait_for_jetstream(self, nc: Client, deadline: float) -> None:
        """A cluster's JetStream answers once its nodes elected a leader."""
        js = nc.jetstream()
        while True:
            try:
                await js.account_info()
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    def pids(self) -> dict[str, int]:
        return {self.name(i): p.pid for i, p in enumerate(self.procs) if p is not None}

    def stop(self, timeout: float) -> None:
        running = [p for p in self.procs if p is not None and p.poll() is None]
        for proc in running:
            proc.send_signal(signal.SIGTERM)
        for proc in running:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs = []
