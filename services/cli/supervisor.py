"""Runs the embedded gateway: nats-server, then every stage as its own process,
and keeps them running.

Stages are started by module name (``python -m workers.policy``); this module
imports none of their code. Each process announces itself on
``sluice.v1.control.ready.<name>`` once it serves, and start-up waits for all.
Afterwards a monitor restarts any process that exits (with backoff) or stops
beating its heartbeat (killed first: it may be stopped or stuck), and tells
everyone which process died, so that requests it held end at once instead of
waiting for their deadline. Only ``stop()`` ends the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib.util
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

from nats.js.errors import APIError

from schemas import bus, subjects
from schemas.lifecycle import ProcessDied
from services import config as config_mod
from services.bus import credentials, metrics, process
from services.cli import bootstrap
from services.cli.layout import PIPELINE, STAGES, Layout, replica_name
from services.cli.nats_nodes import NatsNodes
from services.cli.nats_server import port_is_free, wait_for_port
from services.readiness import NO_SINK_ENV

log = logging.getLogger("sluice.supervisor")

# Credentials for one internal service are made at start, so the README's
# NATS example runs as written.
DEMO_SERVICE = "demo"
# A process silent for this long is replaced (heartbeats come every second).
HEARTBEAT_STALE_S = 5.0
# Restart backoff: doubles from the first to the last, and starts again once
# a process has run this long.
BACKOFF_FIRST_S = 0.25
BACKOFF_MAX_S = 10.0
BACKOFF_RESET_S = 30.0
MONITOR_TICK_S = 0.1
# JetStream's "no suitable peers for placement".
NO_PLACEMENT = 10005


# `make up` installs the engine with `pip install --no-deps` (pyproject.toml's "embedded" extra says why).
ENGINE_MISSING = (
    "the embedded ClickHouse engine (the chdb module) is not installed: `make up` installs it, or "
    "`pip install --no-deps chdb-core-lite pyarrow`; or keep analytics elsewhere with --analytics "
    "server=http://HOST:8123, or run none here with --analytics none"
)


class StartupError(RuntimeError):
    """The gateway cannot start as asked; the message says what to change."""


class Child:
    """One supervised process: how to start it, and how it has been doing."""

    def __init__(self, name: str, args: list[str], *, beats: bool = True) -> None:
        self.name = name
        self.args = args
        # The mock upstream speaks no NATS: only its exit is watched.
        self.beats = beats
        self.proc: subprocess.Popen | None = None
        self.started_at = 0.0
        self.last_beat = 0.0
        self.backoff = BACKOFF_FIRST_S
        self.restart_at: float | None = None
        self.held = False

    def stale(self, now: float) -> bool:
        # A process that never beat yet is starting: its own start-up time is
        # bounded by the wait for ready, not by the heartbeat.
        return self.beats and self.last_beat > self.started_at and now - self.last_beat > HEARTBEAT_STALE_S


class Supervisor:
    def __init__(self, layout: Layout, extra_keys: dict | None = None) -> None:
        self.layout = layout
        self.extra_keys = extra_keys or {}
        self.nats = NatsNodes(
            layout.home, layout.nats_ports, layout.cluster_ports if layout.cluster > 1 else [], self._authorization
        )
        self._children: dict[str, Child] = {}
        self._lock_file: IO[str] | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._monitor: threading.Thread | None = None
        self._drain_s = config_mod.GatewaySettings().drain_s
        # What the monitor did, for the CLI and the tests: (time, name, why).
        self.restarts: list[tuple[float, str, str]] = []

    @property
    def children(self) -> dict[str, subprocess.Popen]:
        with self._lock:
            return {name: c.proc for name, c in self._children.items() if c.proc is not None}

    def _env(self, name: str) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            SLUICE_NATS_URL=self.layout.nats_url,
            SLUICE_CONFIG=str(self.layout.config),
            SLUICE_CLICKHOUSE_DSN=self.layout.dsn,
            SLUICE_PROCESS_NAME=name,
            PYTHONUNBUFFERED="1",
        )
        env[metrics.MULTIPROC_ENV] = str(self.metrics_dir)
        env.pop("SLUICE_NATS_CREDS", None)
        env.pop(NO_SINK_ENV, None)
        if not self.layout.analytics:
            env[NO_SINK_ENV] = "1"
        if self.layout.auth:
            env["SLUICE_NATS_CREDS"] = str(self.creds_path(credentials.role_of(name)))
        return env

    @property
    def metrics_dir(self) -> Path:
        """Where every process writes its Prometheus samples (made empty at start)."""
        return self.layout.home / "metrics"

    def creds_path(self, user: str) -> Path:
        return credentials.path_of(self.layout.home, user)

    @property
    def _admin(self) -> str | None:
        return str(self.creds_path("admin")) if self.layout.auth else None

    def _spawn(self, child: Child) -> None:
        logs = self.layout.home / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{child.name}.log", "ab") as out:  # the child keeps its own copy
            child.proc = subprocess.Popen(
                [sys.executable, *child.args],
                env=self._env(child.name),
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=process.die_with_parent,
                # Its own session: a Ctrl-C in the terminal reaches only the
                # supervisor, which stops the children in order (NATS last).
                start_new_session=True,
            )
        child.started_at = time.monotonic()
        child.restart_at = None

    # -- start -------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start everything and return once every process serves, or raise
        StartupError (ports taken, another gateway on this home, a stage that
        cannot start) having started nothing that keeps running."""
        cfg = config_mod.load(self.layout.config)
        self._drain_s = cfg.gateway.drain_s
        records = config_mod.control_records(cfg, self.extra_keys)
        self.layout.home.mkdir(parents=True, exist_ok=True)
        self._take_home_lock()
        try:
            if self.layout.embedded_engine:
                if self.layout.replicas.get("sink", 1) > 1:
                    raise StartupError("the embedded ClickHouse is one process's: sink=1, or --analytics server=URL")
                if importlib.util.find_spec("chdb") is None:
                    raise StartupError(ENGINE_MISSING)
            self._check_ports()
            # Samples of a gateway run before would be summed with this one's.
            shutil.rmtree(self.metrics_dir, ignore_errors=True)
            self.metrics_dir.mkdir(parents=True)
            self.nats.start()
            asyncio.run(self._start_processes(records, timeout))
        except BaseException:
            self.stop()
            raise
        self._monitor = threading.Thread(target=self._run_monitor, name="sluice-monitor", daemon=True)
        self._monitor.start()

    def _take_home_lock(self) -> None:
        path = self.layout.home / "sluice.lock"
        lock_file = open(path, "a+")  # noqa: SIM115 -- held open for the gateway's life
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            holder = lock_file.read().strip() or "another process"
            lock_file.close()
            raise StartupError(
                f"another `sluice up` (pid {holder}) is running on {self.layout.home}; "
                "stop it first, or use another --home"
            ) from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._lock_file = lock_file

    def _check_ports(self) -> None:
        wanted = [(port, "NATS", "--nats-port") for port in self.layout.nats_ports]
        if self.layout.cluster > 1:
            wanted += [(port, "NATS cluster", "--nats-port") for port in self.layout.cluster_ports]
        wanted.append((self.layout.http_port, "HTTP", "--port"))
        if self.layout.mock_port:
            wanted.append((self.layout.mock_port, "mock upstream", "--mock-port"))
        for port, what, flag in wanted:
            if not port_is_free(port):
                raise StartupError(f"port {port} ({what}) is already in use: free it, or choose another with {flag}")

    def _authorization(self) -> str:
        """The users block every NATS node includes (none: anyone may connect)."""
        if not self.layout.auth:
            return ""
        home, url = self.layout.home, self.layout.nats_url
        for user in [*credentials.ROLES, credentials.service_user(DEMO_SERVICE)]:
            credentials.ensure(home, user, url)
        return credentials.server_block(credentials.users(home))

    async def _prepare(self, nc, records: config_mod.ControlRecords, deadline: float) -> None:
        """Streams, buckets and records. A cluster's nodes join one by one:
        until enough have, a stream with 3 copies finds no place (10005)."""
        while True:
            try:
                await bootstrap.prepare(nc, records, self.layout.stream_replicas)
                return
            except APIError as exc:
                if self.layout.cluster == 1 or exc.err_code != NO_PLACEMENT or time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.25)

    async def _start_processes(self, records: config_mod.ControlRecords, timeout: float) -> None:
        nc = await process.connect("supervisor", self.layout.nats_url, self._admin)
        try:
            # Seed only our own nats-server: if another one answers on the
            # port (it was taken between the check and the start), stop here.
            answering = nc._server_info.get("server_name")
            if not self.nats.ours(answering):
                raise StartupError(f"the NATS answering on port {self.layout.nats_port} is not the one Sluice started")
            deadline = time.monotonic() + timeout
            try:
                await self.nats.wait_for_jetstream(nc, deadline)
            except Exception as exc:
                raise StartupError(f"NATS JetStream not available after start: {exc!r}") from None
            await self._prepare(nc, records, deadline)
            ready: set[str] = set()

            async def on_ready(msg) -> None:
                ready.add(msg.subject.rsplit(".", 1)[1])

            # A heartbeat says "serving" as well as a ready does (it starts just
            # before): a ready published before this subscription reached the
            # server is not waited for in vain.
            await nc.subscribe(f"{subjects.CONTROL_READY}.*", cb=on_ready)
            await nc.subscribe(f"{subjects.CONTROL_HEARTBEAT}.*", cb=on_ready)
            await nc.flush()
            for name, args, replicas in self._stage_processes(self.layout.replicas):
                for i in range(replicas):
                    self._add(Child(replica_name(name, i), args))
            ingresses = self.layout.replicas.get("ingress", 1)
            ports = [self.layout.http_port] * ingresses + self.layout.extra_http_ports
            for i, port in enumerate(ports):
                self._add(Child(replica_name("ingress", i), ["-m", "ingress", "--port", str(port)]))
            if self.layout.mock_port:
                args = ["-m", "loadtest.mock_upstream", "--port", str(self.layout.mock_port)]
                self._add(Child("mock-upstream", args, beats=False))
            expected = {c.name for c in self._children.values() if c.beats}
            while not expected <= ready:
                self._raise_if_any_exited()
                if time.monotonic() > deadline:
                    raise StartupError(f"not ready after {timeout}s: {sorted(expected - ready)}")
                await asyncio.sleep(0.05)
        finally:
            await nc.close()
        wait_for_port(self.layout.http_port, max(1.0, deadline - time.monotonic()), self.children["ingress"])
        for i, port in enumerate(self.layout.extra_http_ports, ingresses):
            wait_for_port(port, max(1.0, deadline - time.monotonic()), self.children[replica_name("ingress", i)])
        if self.layout.mock_port:
            wait_for_port(self.layout.mock_port, 10, self.children["mock-upstream"])

    def _stage_processes(self, counts: dict[str, int]) -> list[tuple[str, list[str], int]]:
        """(name, arguments, replicas) of each stage process. A pipeline runs
        as many times as the most replicas any stage in it was given."""
        stages = {name: args for name, args in STAGES.items() if name != "sink" or self.layout.analytics}
        if self.layout.separate_stages:
            return [(name, args, counts.get(name, 1)) for name, args in stages.items()]
        pipeline = ("pipeline", ["-m", "workers.pipeline", *PIPELINE], max(counts.get(n, 1) for n in PIPELINE))
        alone = [(name, args, counts.get(name, 1)) for name, args in stages.items() if name not in PIPELINE]
        return [pipeline, *alone]

    def _add(self, child: Child) -> None:
        with self._lock:
            self._children[child.name] = child
        self._spawn(child)

    def _raise_if_any_exited(self) -> None:
        for name, proc in self.children.items():
            if proc.poll() is not None:
                raise StartupError(f"{name} exited with {proc.returncode}:\n{self.log_tail(name)}")

    def log_tail(self, name: str, size: int = 2000) -> str:
        path = self.layout.home / "logs" / f"{name}.log"
        return path.read_text(errors="replace")[-size:] if path.exists() else ""

    # -- keep running ------------------------------------------------------

    def _run_monitor(self) -> None:
        try:
            asyncio.run(self._monitor_loop())
        except Exception:
            log.exception("the supervisor's monitor failed; processes are no longer restarted")

    async def _monitor_loop(self) -> None:
        nc = await process.connect("supervisor", self.layout.nats_url, self._admin)

        async def on_beat(msg) -> None:
            child = self._children.get(msg.subject.rsplit(".", 1)[1])
            if child is not None:
                child.last_beat = time.monotonic()

        await nc.subscribe(f"{subjects.CONTROL_HEARTBEAT}.*", cb=on_beat)
        last_tick = time.monotonic()
        try:
            while not self._stopping.is_set():
                now = time.monotonic()
                if now - last_tick > HEARTBEAT_STALE_S / 2:
                    # The supervisor itself was not scheduled for a while: the
                    # whole machine stalled (swapping, a suspended VM). Silence
                    # from everyone then says nothing about any one process.
                    for child in self._children.values():
                        child.last_beat = max(child.last_beat, now) if child.last_beat else 0.0
                last_tick = now
                if not self._stopping.is_set():
                    self.nats.restart_exited(self._note)
                for child in list(self._children.values()):
                    await self._watch(nc, child)
                await asyncio.sleep(MONITOR_TICK_S)
        finally:
            with contextlib.suppress(Exception):
                await nc.close()

    async def _watch(self, nc, child: Child) -> None:
        now = time.monotonic()
        proc = child.proc
        if child.held:
            return
        if proc is not None and proc.poll() is None:
            if child.stale(now):
                self._note(child.name, f"no heartbeat for {now - child.last_beat:.1f}s; killing it")
                proc.kill()
            return
        if proc is not None:  # it has exited: say so once, then restart after its backoff
            self._note(child.name, f"exited with {proc.returncode}; restarting in {child.backoff:g}s")
            await self._announce_death(nc, child.name, proc.pid)
            metrics.process_died(proc.pid, self.metrics_dir)
            ran = now - child.started_at
            child.restart_at = now + (0 if ran > BACKOFF_RESET_S else child.backoff)
            child.backoff = BACKOFF_FIRST_S if ran > BACKOFF_RESET_S else min(child.backoff * 2, BACKOFF_MAX_S)
            child.proc = None
        if child.restart_at is not None and now >= child.restart_at and not self._stopping.is_set():
            with self._lock:
                self._spawn(child)

    async def _announce_death(self, nc, name: str, pid: int) -> None:
        died = ProcessDied(name=name, pid=pid, at_ns=time.time_ns())
        with contextlib.suppress(Exception):  # NATS itself may be what is down
            await nc.publish(subjects.CONTROL_DIED, bus.encode(died))

    def _note(self, name: str, why: str) -> None:
        log.warning("%s %s", name, why)
        self.restarts.append((time.time(), name, why))

    # -- operator actions --------------------------------------------------

    def hold(self, name: str) -> None:
        """Stop one process and keep it stopped (maintenance, or a test of an outage)."""
        child = self._children[name]
        child.held = True
        if child.proc is not None and child.proc.poll() is None:
            child.proc.terminate()
            child.proc.wait(self._drain_s + 5.0)

    def restart(self, name: str, timeout: float = 60.0) -> float:
        """Stop one process gracefully (SIGTERM: it drains) and wait until the
        monitor's replacement serves; returns the seconds that took. A rolling
        restart is this, one process after another."""
        child = self._children[name]
        old = child.proc
        started = time.monotonic()
        if old is not None and old.poll() is None:
            old.terminate()
            old.wait(self._drain_s + 5.0)
        while not (child.proc not in (None, old) and (not child.beats or child.last_beat > child.started_at)):
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"{name} did not serve again within {timeout}s")
            time.sleep(0.02)
        return time.monotonic() - started

    def release(self, name: str) -> None:
        """Start a held process again."""
        child = self._children[name]
        with self._lock:
            self._spawn(child)
        child.held = False

    def pids(self) -> dict[str, int]:
        out = {name: p.pid for name, p in self.children.items()}
        out.update(self.nats.pids())
        return out

    # -- stop ----------------------------------------------------------------

    def stop(self, timeout: float | None = None) -> None:
        """SIGTERM every process, wait while they drain, kill what is left."""
        if timeout is None:
            timeout = self._drain_s + 5.0
        self._stopping.set()
        if self._monitor is not None:
            self._monitor.join(5)
            self._monitor = None
        procs = list(self.children.values())
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        with self._lock:
            self._children.clear()
        self.nats.stop(timeout)
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def wait(self) -> None:
        """Block until interrupted; the monitor keeps every process running."""
        while True:
            time.sleep(0.5)
